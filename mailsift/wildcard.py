"""Type 2 wildcard lists (Mailtraq's barring syntax), read top to bottom.

Each line includes a range of addresses, or excludes one when it starts with ``~``. The last
line that matches decides. Wildcards: ``*`` one or more characters, ``?`` one character,
``$`` one letter (A-Z, any case), ``%`` one digit. Matching ignores case in ASCII only (so the
Kelvin sign does not count as a ``k`` nor as a letter for ``$``); everything else is literal (so
``"*@*"`` matches a quoted local part that hides an address).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_WILD = {"*": ".+", "?": ".", "$": "[A-Za-z]", "%": "[0-9]"}


@lru_cache(maxsize=4096)
def compile_wildcard(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(_WILD.get(ch) or re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.ASCII | re.DOTALL)


@dataclass(frozen=True, slots=True)
class WildcardEntry:
    pattern: str
    exclude: bool
    regex: re.Pattern[str]


class WildcardList:
    """An ordered include/exclude list; ``matches(x)`` is True when x is in the range."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.entries: list[WildcardEntry] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = line.startswith("~")
            pat = line[1:].strip() if exclude else line
            if pat:
                self.entries.append(WildcardEntry(pat, exclude, compile_wildcard(pat)))

    @classmethod
    def from_file(cls, path: str) -> WildcardList:
        with open(path, encoding="utf-8") as fh:
            return cls(fh.read().splitlines())

    def decide(self, value: str) -> WildcardEntry | None:
        """The entry that decides `value` (the last one that matches), or None."""
        decided: WildcardEntry | None = None
        for e in self.entries:
            if e.regex.fullmatch(value):
                decided = e
        return decided

    def matches(self, value: str) -> bool:
        e = self.decide(value)
        return e is not None and not e.exclude

    def __len__(self) -> int:
        return len(self.entries)
