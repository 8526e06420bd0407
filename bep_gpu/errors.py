"""Errors a user can fix; the command line prints them as one line and exits non-zero."""


class UserError(ValueError):
    """Bad input or settings: the message says what is wrong and what to do."""
