"""One exception tree for every problem a user can cause or fix.

User-facing commands catch :class:`GreenRunnerError`, print its message (which says what
was wrong and what to do) and exit non-zero; anything else is a bug and keeps its traceback.
"""


class GreenRunnerError(Exception):
    """A problem the user can fix; the message names the bad value and the fix."""


class ConfigError(GreenRunnerError):
    """An invalid setting: weights, budget, strategy or its parameters."""


class DataError(GreenRunnerError):
    """A malformed input file or data set (the message names the file and the problem)."""
