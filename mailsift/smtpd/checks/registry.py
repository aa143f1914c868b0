"""The registry of the SMTP checks: what each check is called, when it runs, how it is built.

A check module registers its check class with ``register_check``: the name and stage come
from the class (``name``, ``stage``), the registration adds the settings block the check
reads (a pydantic model and the TOML table it is read from, e.g. ``[dnsbl]``), the symbols
it emits (their scores in ``scores.SCORES``; a module's own symbols are added there through
``scores=``), when it is enabled by its settings, and how it is built::

    @register_check(
        block="hello", settings=HelloSettings,
        scores={"HELLO_WORLD": (1.0, "the client said hello")},
        build=lambda env: Hello(env.block(HelloSettings)),
    )
    class Hello:
        name: ClassVar[str] = "hello"
        stage: ClassVar[Stage] = Stage.HELO
        ...

Which registered checks run, and in which order within a stage, comes from the ``[checks]``
block (``order``, like Haraka's ``config/plugins``); ``[checks] modules`` names more
modules to import, so a check living outside this package registers itself the same way.
Every module of this package is imported by ``load_registry`` (a new module here needs no
other file edited). ``mailsift checks`` lists the result.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from mailsift.smtpd.checks.base import Check, Clock, Stage, system_clock
from mailsift.smtpd.checks.scores import SCORES, add_scores

if TYPE_CHECKING:
    import dns.asyncresolver

    from mailsift.config import Settings
    from mailsift.store.base import Store
    from mailsift.store.greylist import GreylistStore
    from mailsift.store.lists import StoreListPolicy

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass
class CheckEnv:
    """What a check's ``build`` function gets: the settings and the shared resources, each
    made on first use (a resolver, the list policy over the store, the greylist store)."""

    settings: Settings
    clock: Clock = system_clock
    _resolver: dns.asyncresolver.Resolver | None = None
    _store: Store | None = None
    _lists: StoreListPolicy | None = None
    _greylist_store: GreylistStore | None = None

    def block(self, model: type[M]) -> M:
        """The settings block of `model` (a registered check settings model)."""
        return self.settings.check_block(model)

    @property
    def resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            from mailsift.smtpd.checks.dns import make_resolver

            self._resolver = make_resolver(self.settings.dns)
        return self._resolver

    @property
    def lists(self) -> StoreListPolicy:
        """The black/white list policy over the main store (opened from the settings)."""
        if self._lists is None:
            from mailsift.store.lists import StoreListPolicy

            if self._store is None:
                from mailsift.store import open_store_for

                self._store = open_store_for(self.settings)
            self._lists = StoreListPolicy(self._store)
        return self._lists

    @property
    def greylist_store(self) -> GreylistStore:
        if self._greylist_store is None:
            from mailsift.store.greylist import greylist_store_from_settings

            self._greylist_store = greylist_store_from_settings(self.settings)
        return self._greylist_store


def _always(_settings: Settings) -> bool:
    return True


@dataclass(frozen=True)
class CheckSpec:
    """One registered check."""

    name: str
    stage: Stage
    cls: type[Any]
    build: Callable[[CheckEnv], Check | None]  # None: nothing to check with these settings
    enabled: Callable[[Settings], bool] = _always  # by its own settings block
    block: str = ""  # the TOML table of its settings ("" when it has none)
    symbols: tuple[str, ...] = ()  # the fixed symbols it emits (scores in scores.SCORES)
    dynamic_symbols: str = ""  # symbols named at run time, e.g. from configured zones
    module: str = ""

    @property
    def skip_flags(self) -> dict[str, bool]:
        from mailsift.smtpd.runner import skip_flags

        return skip_flags(self.cls)


CHECKS: dict[str, CheckSpec] = {}  # by check name, in registration order
BLOCKS: dict[str, type[BaseModel]] = {}  # settings model by block (TOML table) name


def register_check(
    *,
    build: Callable[[CheckEnv], Check | None],
    enabled: Callable[[Settings], bool] = _always,
    block: str = "",
    settings: type[BaseModel] | None = None,
    symbols: Iterable[str] = (),
    scores: Mapping[str, tuple[float, str]] | None = None,
    dynamic_symbols: str = "",
) -> Callable[[type[T]], type[T]]:
    """Class decorator: register the check class under its ``name`` (see the module doc).

    `symbols` names symbols already in the scores table; `scores` adds the check's own
    (``{"NAME": (score, description)}``) to the table. Both are the check's symbols.
    """
    if (settings is None) != (not block):
        raise ValueError("a check settings model needs its block name, and the reverse")
    own = dict(scores or {})

    def decorate(cls: type[T]) -> type[T]:
        name = str(getattr(cls, "name", ""))
        if not name:
            raise ValueError(f"{cls.__qualname__} has no check name")
        known = CHECKS.get(name)
        if known is not None and (known.module, known.cls.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):  # the same class again (a module reloaded) replaces its registration
            raise ValueError(f"check {name} is already registered by {known.module}")
        if settings is not None:
            other = BLOCKS.get(block)
            if other is not None and other.__qualname__ != settings.__qualname__:
                raise ValueError(f"settings block [{block}] is already {other.__qualname__}")
            BLOCKS[block] = settings
        add_scores(own)
        names = (*symbols, *own)
        missing = [n for n in names if n not in SCORES]
        if missing:
            raise ValueError(f"check {name}: symbols not in the scores table: {missing}")
        CHECKS[name] = CheckSpec(
            name=name,
            stage=Stage(getattr(cls, "stage")),  # noqa: B009 - a class attribute by contract
            cls=cls,
            build=build,
            enabled=enabled,
            block=block,
            symbols=tuple(dict.fromkeys(names)),
            dynamic_symbols=dynamic_symbols,
            module=cls.__module__,
        )
        return cls

    return decorate


_BUILTIN_SKIP = {"base", "context", "dns", "registry", "scores"}  # modules without checks


def load_registry(modules: Iterable[str] = ()) -> dict[str, CheckSpec]:
    """Import every module of this package and the given `modules` (each registers its
    checks on import), and return the registered checks by name."""
    package = importlib.import_module("mailsift.smtpd.checks")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _BUILTIN_SKIP:
            importlib.import_module(f"{package.__name__}.{info.name}")
    for module in modules:
        importlib.import_module(module)
    return CHECKS


@dataclass
class Listing:
    """A registered check as ``mailsift checks`` shows it."""

    spec: CheckSpec
    position: int | None  # in ``[checks] order`` (1-based); None: not listed, does not run
    enabled: bool  # listed and enabled by its settings block
    scores: dict[str, float] = field(default_factory=dict)  # its symbols, overrides applied


def listing(settings: Settings) -> list[Listing]:
    """Every registered check: those in ``[checks] order`` first, by stage then by order,
    then the ones not listed."""
    specs = load_registry(settings.checks.modules)
    order = {name: i for i, name in enumerate(settings.checks.order, 1)}
    overrides = settings.scores.overrides()
    out = [
        Listing(
            spec,
            order.get(spec.name),
            spec.name in order and spec.enabled(settings),
            {s: overrides.get(s, SCORES[s][0]) for s in spec.symbols},
        )
        for spec in specs.values()
    ]
    out.sort(key=lambda c: (c.position is None, c.spec.stage, c.position or 0))
    return out
