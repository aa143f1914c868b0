"""The deterministic SMTP checks, one module each, built in stage order by ``build_checks``.

Each check registers itself (``registry.register_check``: name, stage, settings block,
symbols); ``[checks] order`` in the configuration says which run and in which order within
a stage, and ``mailsift checks`` lists them with their stages, skip flags, symbols and
scores. Every check implements ``mailsift.smtpd.checks.base.Check``; the symbols' scores
are in ``scores.py`` (``[scores]`` overrides them); DNS goes through ``dns.py`` (one
resolver, a per-session time budget).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsift.smtpd.checks.base import Check, Clock, Stage, system_clock

if TYPE_CHECKING:  # the package stays light: reading the settings imports its scores table
    import dns.asyncresolver

    from mailsift.config import Settings
    from mailsift.store.base import Store
    from mailsift.store.greylist import GreylistStore
    from mailsift.store.lists import StoreListPolicy

__all__ = ["build_checks"]


def build_checks(
    settings: Settings,
    *,
    resolver: dns.asyncresolver.Resolver | None = None,
    clock: Clock | None = None,
    store: Store | None = None,
    greylist_store: GreylistStore | None = None,
    lists: StoreListPolicy | None = None,
) -> list[Check]:
    """The checks of ``[checks] order`` their settings enable, in stage order (within a
    stage, in the configured order), each carrying the ``[scores]`` overrides of its symbols
    (``score_overrides``, applied by the runner).

    `store` (the main store, for the black/white lists) is opened from ``settings.store_url``
    when not given and a list check runs; `greylist_store` from ``settings.greylist.backend``.
    """
    from mailsift.smtpd.checks.registry import CheckEnv, load_registry

    specs = load_registry(settings.checks.modules)
    env = CheckEnv(
        settings,
        clock or system_clock,
        _resolver=resolver,
        _store=store,
        _lists=lists,
        _greylist_store=greylist_store,
    )
    overrides = settings.scores.overrides()
    checks: list[Check] = []
    for name in settings.checks.order:
        spec = specs[name]
        if not spec.enabled(settings):
            continue
        check = spec.build(env)
        if check is None:
            continue
        mine = {s: overrides[s] for s in spec.symbols if s in overrides}
        if mine:
            check.score_overrides = mine  # type: ignore[attr-defined]
        checks.append(check)
    checks.sort(key=lambda c: Stage(c.stage))  # stable: keeps the order within a stage
    return checks
