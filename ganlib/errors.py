"""The error type for problems a user can fix (bad params, bad files, missing stage outputs).

Command-line entry points print these as one clear message instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class UserFacingError(Exception):
    """A problem with the user's input or setup; the message names it and says what to do."""
