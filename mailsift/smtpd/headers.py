"""Header stamping on the way through: what we remove and what we prepend.

Removed first (untrusted input, never believed): every incoming ``X-Spam-*`` field, and every
``Authentication-Results`` field (RFC 8601) that claims our authserv-id (section 5: a border
MTA MUST remove those, someone else forged them).

Prepended (newest on top, in this order):

* ``Received`` (RFC 5321 section 4.4), with ``ESMTP``/``ESMTPS``/``ESMTPA``/``ESMTPSA``
  (RFC 3848) and the envelope recipient when there is exactly one;
* ``Authentication-Results: <authserv-id>; <clauses>`` built from the checks' results
  (``CheckResult.auth_results``), plus ``auth=pass smtp.auth=<user>`` for AUTH; ``none``
  when there is nothing to say;
* SpamAssassin-compatible fields, so existing Sieve rules keep working:
  ``X-Spam-Flag: YES`` (only when spam), ``X-Spam-Score: 7.3``, ``X-Spam-Level: *******``,
  ``X-Spam-Status: Yes, score=7.3 required=5.0 tests=A,B autolearn=no version=mailsift-x``.

The body is never touched; only the header block is edited, on bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from email.utils import formatdate

from mailsift.verdict import Verdict


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("mailsift")
    except Exception:  # not installed (running from a source tree)
        return "0"


VERSION = _package_version()

FOLD_AT = 78
_FIELD_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_COMMENT_RE = re.compile(r"\([^()]*\)")


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its final line break, the rest: blank line + body)."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    candidates = [(i + 2, i) for i in (crlf,) if i >= 0] + [(i + 1, i) for i in (lf,) if i >= 0]
    if not candidates:
        return raw, b""
    end, _ = min(candidates, key=lambda c: c[1])
    return raw[:end], raw[end:]


def iter_fields(header_block: bytes) -> list[bytes]:
    """The header fields, each with its continuation lines and line breaks."""
    fields: list[bytes] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def field_name(field: bytes) -> str:
    m = _FIELD_NAME_RE.match(field)
    return m.group(1).decode("ascii").lower() if m else ""


def field_value(field: bytes) -> str:
    _, _, value = field.partition(b":")
    return re.sub(r"\s+", " ", value.decode("utf-8", "replace")).strip()


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results value (comments and version dropped)."""
    head = _COMMENT_RE.sub(" ", value).split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""


def remove_fields(raw: bytes, drop: Callable[[str, str], bool]) -> tuple[bytes, list[str]]:
    """Remove every header field for which ``drop(name, value)`` is true."""
    head, rest = split_message(raw)
    kept, removed = [], []
    for field in iter_fields(head):
        name = field_name(field)
        if name and drop(name, field_value(field)):
            removed.append(name)
        else:
            kept.append(field)
    if not removed:
        return raw, []
    return b"".join(kept) + rest, removed


def is_untrusted(name: str, value: str, authserv_id: str) -> bool:
    """An incoming ``X-Spam-*`` field, or ``Authentication-Results`` claiming our
    authserv-id (``name`` lower-case, ``value`` unfolded)."""
    if name.startswith("x-spam-"):
        return True
    return name == "authentication-results" and authserv_id_of(value) == authserv_id.lower()


def remove_untrusted(raw: bytes, authserv_id: str) -> tuple[bytes, list[str]]:
    """Drop incoming ``X-Spam-*`` and ``Authentication-Results`` claiming our authserv-id."""
    return remove_fields(raw, lambda name, value: is_untrusted(name, value, authserv_id))


def fold(name: str, value: str, width: int = FOLD_AT) -> bytes:
    """``Name: value`` folded at spaces to about ``width`` columns, CRLF-terminated."""
    words = value.split(" ")
    lines, cur = [], f"{name}:"
    for w in words:
        if not w:
            continue
        if len(cur) + 1 + len(w) > width and cur.strip() and cur != f"{name}:":
            lines.append(cur)
            cur = "\t" + w
        else:
            cur = f"{cur} {w}"
    lines.append(cur)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def prepend(raw: bytes, fields: Sequence[tuple[str, str]]) -> bytes:
    """Put these fields on top of the message, first one first."""
    return b"".join(fold(n, v) for n, v in fields) + raw


# ---- builders ---------------------------------------------------------------------------
def received(
    *,
    helo: str | None,
    client_ip: str,
    client_name: str | None,
    by: str,
    queue_id: str,
    esmtp: bool,
    tls: str | None,
    auth_user: str | None,
    recipients: Sequence[str] = (),
    when: float | None = None,
) -> tuple[str, str]:
    proto = "ESMTP" if esmtp else "SMTP"
    if tls and esmtp:
        proto += "S"
    if auth_user and esmtp:
        proto += "A"
    ip = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    from_part = f"from {_clean(helo) or 'unknown'} ({_clean(client_name) or 'unknown'} [{ip}])"
    tls_part = f" ({tls})" if tls else ""
    for_part = f" for <{_clean(recipients[0])}>" if len(recipients) == 1 else ""
    date = formatdate(when if when is not None else time.time(), localtime=False)
    value = f"{from_part} by {by} (mailsift){tls_part} with {proto} id {queue_id}{for_part}; {date}"
    return "Received", value


def authentication_results(
    authserv_id: str, clauses: Iterable[str], auth_user: str | None = None
) -> tuple[str, str]:
    parts = [c.strip().rstrip(";") for c in clauses if c and c.strip()]
    if auth_user:
        parts.insert(0, f"auth=pass smtp.auth={_clean(auth_user)}")
    return "Authentication-Results", f"{authserv_id}; {'; '.join(parts) or 'none'}"


def spam_headers(
    verdict: Verdict, extra_tests: Iterable[str] = (), version: str | None = None
) -> list[tuple[str, str]]:
    """X-Spam-Flag (only when spam), X-Spam-Score, X-Spam-Level, X-Spam-Status."""
    spam = verdict.is_spam
    score = verdict.score
    tests = sorted({s.name for s in verdict.rules} | set(extra_tests))
    ver = version or f"mailsift-{VERSION}"
    status = (
        f"{'Yes' if spam else 'No'}, score={score:.1f} required={verdict.required_score:.1f} "
        f"tests={','.join(tests) or 'none'} autolearn=no version={ver}"
    )
    out = []
    if spam:
        out.append(("X-Spam-Flag", "YES"))
    out.append(("X-Spam-Score", f"{score:.1f}"))
    out.append(("X-Spam-Level", "*" * max(0, min(50, int(score)))))
    out.append(("X-Spam-Status", status))
    return out


def _clean(value: str | None) -> str:
    """Client-supplied text made safe for a header (no line breaks, no control chars)."""
    if not value:
        return ""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in value)[:255]
