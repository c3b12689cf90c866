"""The exceptions that reach a user as a one-line message."""

from __future__ import annotations

import re
from typing import Callable

# Marks a setting's name inside a SettingError's message; no message text holds it.
_MARK = "\x1f"
_MARKED = re.compile(f"{_MARK}(\\w+){_MARK}")


class CharnnError(Exception):
    """A problem with the user's input: the message names it and says how to fix it.

    The command line prints it as `charnn: error: <message>` and exits with status 2.
    """


def setting(name: str) -> str:
    """A setting's name (a TrainConfig field, such as "batch_size") as a SettingError's
    message holds it: the library's callers read the field's name, the command line its
    flag (--batch-size)."""
    return f"{_MARK}{name}{_MARK}"


class SettingError(CharnnError):
    """A setting's value is impossible. The message names settings through setting(): str()
    shows them as the names a caller of the library gave (TrainConfig's fields), naming(f)
    as f(name) shows them, as the command line's flags for instance."""

    def __init__(self, message: str):
        self.template = message
        self.settings = tuple(dict.fromkeys(_MARKED.findall(message)))
        super().__init__(self.naming(lambda name: name))

    def naming(self, name_of: Callable[[str], str]) -> str:
        return _MARKED.sub(lambda match: name_of(match.group(1)), self.template)
