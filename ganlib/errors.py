"""The error type for problems a user can fix (bad params, bad files, missing stage outputs, a full disk).

Command-line entry points print these as one clear message (exit status 2)
instead of a traceback; anything else is a bug, reported with its traceback
in the log and exit status 1 (flows/boundary.py, the one place that decides).
"""


class UserFacingError(Exception):
    """A problem with the user's input or setup; the message names it and says what to do."""
