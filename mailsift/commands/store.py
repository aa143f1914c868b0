"""The store as a command opens it: ``cli_store(settings)`` (no commands of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mailsift.config import Settings
    from mailsift.store import Store


@contextmanager
def cli_store(settings: Settings) -> Iterator[Store]:
    """The settings' store for one command, closed when the command is done. A store that
    cannot be opened ends the command: ``error: ...`` on stderr, exit status 2."""
    from mailsift.store import StoreError, open_store_for

    try:
        store = open_store_for(settings)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield store
    finally:
        store.close()
