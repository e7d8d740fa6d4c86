"""Errors the CLI turns into a one-line message and an exit code instead of a traceback."""


class RecordkitError(Exception):
    """A problem with the user's input or setup, explained in the message."""


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving its work; the CLI exits 128 + signal."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
