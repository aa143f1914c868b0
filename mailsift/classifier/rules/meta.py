"""Meta-rule expressions: ``(A && !B) || (C + D + E) >= 2`` -> Python source.

The grammar is SpamAssassin's (``Mail::SpamAssassin::Conf``, "meta"): rule names, numbers,
``! && || ^``, ``+ - * /``, ``== != < <= > >=``, parentheses, and ``rules_matching(GLOB)``
(the sum of every rule whose name matches the glob). Operator precedence follows Perl.
A rule name's value is its hit count (1 for a hit, N for ``tflags multiple``, 0 otherwise);
names of unknown or skipped rules are 0, so a meta over a skipped rule sees it as not hit.

The parser only ever emits tokens it built itself (``h[<int>]``, numbers, operators), so the
generated source is safe to ``compile()`` whatever a rule file contains.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<fn>rules_matching)\s*\(\s*(?P<glob>[\w*?]+)\s*\)"
    r"|(?P<name>[A-Za-z_][\w:.]*)|(?P<op>&&|\|\||==|!=|>=|<=|[!<>+\-*/()^]))"
)

# binary operators: precedence (higher binds tighter), Python rendering
_BINARY: dict[str, tuple[int, str]] = {
    "||": (1, "or"),
    "&&": (2, "and"),
    "^": (3, "^"),
    "==": (4, "=="),
    "!=": (4, "!="),
    "<": (5, "<"),
    "<=": (5, "<="),
    ">": (5, ">"),
    ">=": (5, ">="),
    "+": (6, "+"),
    "-": (6, "-"),
    "*": (7, "*"),
    "/": (7, "/"),
}


class MetaError(ValueError):
    """The expression cannot be parsed; ``str(exc)`` says why."""


Token = tuple[str, str]  # (kind, text): kind in num, name, glob, op


def tokenize(expr: str) -> list[Token]:
    if re.search(r"::|->|[$@%;{}]", expr.replace("rules_matching", "")):
        raise MetaError("invalid characters in meta expression")
    out: list[Token] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            raise MetaError(f"unexpected {expr[pos : pos + 10]!r}")
        pos = m.end()
        if m.group("num") is not None:
            out.append(("num", m.group("num")))
        elif m.group("fn") is not None:
            out.append(("glob", m.group("glob")))
        elif m.group("name") is not None:
            out.append(("name", m.group("name")))
        else:
            out.append(("op", m.group("op")))
    if not out:
        raise MetaError("empty expression")
    return out


def names_in(expr: str, known: Iterable[str] = ()) -> set[str]:
    """Rule names an expression refers to (globs expanded against ``known``)."""
    found: set[str] = set()
    known_list = list(known)
    for kind, text in tokenize(expr):
        if kind == "name":
            found.add(text)
        elif kind == "glob":
            found.update(fnmatch.filter(known_list, text))
    return found


class _Parser:
    def __init__(
        self, tokens: list[Token], resolve: Callable[[str], str], glob: Callable[[str], list[str]]
    ):
        self.t = tokens
        self.i = 0
        self.resolve = resolve
        self.glob = glob

    def peek(self) -> Token | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise MetaError("unexpected end of expression")
        self.i += 1
        return tok

    def primary(self) -> str:
        kind, text = self.next()
        if kind == "num":
            return text
        if kind == "name":
            return self.resolve(text)
        if kind == "glob":
            names = self.glob(text)
            return "(" + " + ".join(self.resolve(n) for n in names) + ")" if names else "0"
        if text == "(":
            inner = self.expr(0)
            if self.next() != ("op", ")"):
                raise MetaError("missing )")
            return f"({inner})"
        if text == "!":
            return f"(not {self.primary()})"
        if text == "-":
            return f"(-{self.primary()})"
        if text == "+":
            return self.primary()
        raise MetaError(f"unexpected {text!r}")

    def expr(self, min_prec: int) -> str:
        left = self.primary()
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _BINARY:
                return left
            prec, py = _BINARY[tok[1]]
            if prec < min_prec:
                return left
            self.i += 1
            right = self.expr(prec + 1)
            if py == "/":
                left = f"_div({left}, {right})"
            elif py == "^":
                left = f"(int({left}) ^ int({right}))"
            else:
                left = f"({left} {py} {right})"

    def parse(self) -> str:
        out = self.expr(0)
        if self.peek() is not None:
            raise MetaError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return out


def to_python(
    expr: str,
    resolve: Callable[[str], str],
    glob: Callable[[str], list[str]] = lambda _g: [],
) -> str:
    """Translate a meta expression into a Python expression over names ``resolve`` gives."""
    return _Parser(tokenize(expr), resolve, glob).parse()


def _div(a: float, b: float) -> float:
    return a / b if b else 0


def evaluate_constant(expr: str) -> float:
    """Evaluate an expression without rule names (used for ``if`` conditions)."""

    def no_names(name: str) -> str:
        raise MetaError(f"unknown name {name!r}")

    src = to_python(expr, no_names)
    return float(eval(compile(src, "<if>", "eval"), {"__builtins__": {"int": int}, "_div": _div}))  # noqa: S307


def build_function(statements: list[tuple[int, str]]) -> Callable[[list[int]], None]:
    """One function running ``h[i] = 1 if <expr> else 0`` for each meta, in the given order."""
    lines = ["def _metas(h):"]
    lines += [f"    h[{i}] = 1 if {src} else 0" for i, src in statements]
    lines.append("    return None")
    namespace: dict[str, object] = {"__builtins__": {"int": int}, "_div": _div}
    exec(compile("\n".join(lines), "<meta rules>", "exec"), namespace)  # noqa: S102
    fn = namespace["_metas"]
    assert callable(fn)
    return fn  # type: ignore[return-value]
