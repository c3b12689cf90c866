"""The one exception type that reaches a user as a one-line message."""


class CharnnError(Exception):
    """A problem with the user's input: the message names it and says how to fix it.

    The command line prints it as `charnn: error: <message>` and exits with status 2.
    """
