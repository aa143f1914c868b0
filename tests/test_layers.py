"""Import contracts between the package's layers, read from the source with ``ast``.

Every import statement counts, wherever it is: at module level, inside a function (the lazy
imports that keep a serving process small), under ``if TYPE_CHECKING:``, and literal
``importlib.import_module("...")`` / ``__import__("...")`` calls. Relative imports are
resolved against the importing module's package.

- The scoring core (``mailsift.classifier``) is pure: no store, training pipeline or MLflow
  registry, HTTP API, SMTP filter or service in it. Callers hand it what it needs (a model
  folder, settings, a sender-list policy).
- The web UI (``mailsift.api.ui``) is a leaf: the SMTP filter and the command line do not
  import it.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import mailsift

PACKAGE_DIR = Path(mailsift.__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted name imported: a module, or a module's attribute
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(PACKAGE_DIR.parent)}:{self.line}: {self.target}"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_from(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _literal_import_call(node: ast.Call) -> str | None:
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )
    if named and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def imports_of(path: Path) -> list[Import]:
    """Every name ``path`` imports: ``import a.b`` gives ``a.b``; ``from a.b import c``
    gives ``a.b.c`` (``c`` is a module or an attribute of ``a.b``: both start with it)."""
    importer = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(importer, a.name, path, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, importer, is_package)
            for a in node.names:
                target = base if a.name == "*" else f"{base}.{a.name}" if base else a.name
                out.append(Import(importer, target, path, node.lineno))
        elif isinstance(node, ast.Call):
            name = _literal_import_call(node)
            if name is not None:
                out.append(Import(importer, name, path, node.lineno))
    return out


def modules_under(package: str) -> list[Path]:
    root = PACKAGE_DIR.parent.joinpath(*package.split("."))
    if root.is_dir():
        return sorted(root.rglob("*.py"))
    single = root.with_suffix(".py")
    return [single] if single.is_file() else []


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(
    importers: list[str], forbidden: list[str], pending: frozenset[tuple[str, str]] = frozenset()
) -> list[str]:
    """Imports by modules under ``importers`` of names under ``forbidden``, except the
    ``pending`` (importing module, imported name) pairs."""
    found = []
    for package in importers:
        paths = modules_under(package)
        assert paths, f"no modules under {package}"
        for path in paths:
            for imp in imports_of(path):
                if (imp.importer, imp.target) in pending:
                    continue
                if any(within(imp.target, f) for f in forbidden):
                    found.append(str(imp))
    return found


CLASSIFIER_MUST_NOT_IMPORT = [
    "mailsift.store",
    "mailsift.pipeline",
    "mailsift.api",
    "mailsift.smtpd",
    "mailsift.service",
    "mlflow",
]


def test_the_classifier_imports_no_store_pipeline_api_smtpd_service_or_mlflow() -> None:
    assert violations(["mailsift.classifier"], CLASSIFIER_MUST_NOT_IMPORT) == []


# Imports that break the web-UI contract and are being moved; nothing may be added to it.
UI_PENDING: frozenset[tuple[str, str]] = frozenset()


def test_the_smtp_filter_and_the_commands_do_not_import_the_web_ui() -> None:
    assert (
        violations(["mailsift.smtpd", "mailsift.commands"], ["mailsift.api.ui"], UI_PENDING) == []
    )


# ---- the reader itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import mailsift.store.base", "mailsift.store.base"),
        ("from mailsift.store import Store", "mailsift.store.Store"),
        ("from .. import service", "mailsift.service"),
        ("from ..pipeline.registry import serving_model_dir", "mailsift.pipeline.registry"),
        ("from . import features", "mailsift.classifier.features"),
        ("def f():\n    import mlflow\n", "mlflow"),
        ("if TYPE_CHECKING:\n    from mailsift.api.ui import view\n", "mailsift.api.ui.view"),
        ("importlib.import_module('mailsift.smtpd.server')", "mailsift.smtpd.server"),
    ],
)
def test_imports_are_found_wherever_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    """The reader sees lazy, type-checking-only, relative and importlib imports (a module
    written as if it were ``mailsift/classifier/probe.py``)."""
    fake_root = tmp_path / "mailsift"
    (fake_root / "classifier").mkdir(parents=True)
    probe = fake_root / "classifier" / "probe.py"
    probe.write_text(source + "\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", fake_root)
    found = imports_of(probe)
    assert [i.target for i in found] in ([expected], [f"{expected}.{source.split()[-1]}"])
    forbidden = [*CLASSIFIER_MUST_NOT_IMPORT, "mailsift.classifier.features"]
    assert violations(["mailsift.classifier"], forbidden) == [str(i) for i in found]
