"""The SMTP filter's verdict writer: ``mailsift.store.verdicts.VerdictWriter`` (the HTTP API
writes its verdict records with the same writer)."""

from mailsift.store.verdicts import Item, VerdictWriter

__all__ = ["Item", "VerdictWriter"]
