"""Runnable Beam entry points; the code they run lives in the recordkit package."""
