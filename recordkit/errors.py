"""Errors the CLI turns into a one-line message and an exit code instead of a traceback."""


class RecordkitError(Exception):
    """A problem with the user's input or setup, explained in the message."""
