"""Type stub of the native feature hasher (``_hashing.c``)."""

from collections.abc import Iterable

def columns(strings: Iterable[str | bytes], n: int, /) -> bytearray: ...
