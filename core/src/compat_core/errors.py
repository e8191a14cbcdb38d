"""User-facing errors.

A :class:`CompatError` is bad input the user can fix. The CLI prints its message as one paragraph
and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class CompatError(Exception):
    """Bad input: the message names the problem and the fix.

    Example:
        >>> raise CompatError("--classes 12 is outside the data (labels 0-9). Use labels 0-9.")
        Traceback (most recent call last):
        ...
        compat_core.errors.CompatError: --classes 12 is outside the data (labels 0-9). Use labels 0-9.
    """

    exit_code = 2
