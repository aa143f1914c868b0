"""What the reviewer sees of a held message: text only, safe by construction.

``message_view(raw)`` is the message as plain text and ``explanation(entry)`` the verdict's
reasons, heaviest first; ``mailsift quarantine show`` prints them, and the web UI
(``mailsift.api.ui``) and the quarantine's JSON routes show them.

The message is parsed with ``mailsift.message.parse``; the view model holds plain strings
(headers, the decoded text or the HTML rendered to text, the links, the attachments' names),
with control and bidi-override characters made visible. Nothing of the message becomes
markup: the web UI's templates print these strings through Jinja2's autoescaping, links are
shown as text (never ``<a href>``), attachments are named (never served), images are never
fetched; there the Content-Security-Policy is the second wall.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from mailsift.message import parse
from mailsift.quarantine import QuarantineEntry

SHOWN_HEADERS = ("From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID")
MAX_BODY_CHARS = 100_000
MAX_LINKS = 200


@dataclass(slots=True)
class MessageView:
    headers: list[tuple[str, str]]
    all_headers: list[tuple[str, str]]
    body: str
    body_source: str  # "text", "html (as text)", "none"
    html_text: str  # the HTML part rendered to text, when there is also a text part
    truncated: bool
    links: list[dict[str, str]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    images: int = 0
    html_tags: int = 0
    defects: list[str] = field(default_factory=list)


def _visible(s: str) -> str:
    """Make control and bidi-override characters visible (no spoofed right-to-left text);
    line ends become plain newlines."""
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if ch in "\n\t":
            out.append(ch)
        elif cat in ("Cc", "Cf") or (cat.startswith("Z") and ch not in " \u00a0"):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def message_view(raw: bytes) -> MessageView:
    pm = parse(raw)
    if pm.text.strip():
        body, source = pm.text, "text"
    elif pm.html_text.strip():
        body, source = pm.html_text, "html (as text)"
    else:
        body, source = "", "none"
    html_text = pm.html_text if source == "text" and pm.html_text.strip() else ""
    truncated = pm.truncated or len(body) > MAX_BODY_CHARS or len(html_text) > MAX_BODY_CHARS
    shown = {h.lower() for h in SHOWN_HEADERS}
    return MessageView(
        headers=[(k, _visible(v)) for k, v in pm.headers if k.lower() in shown],
        all_headers=[(k, _visible(v)) for k, v in pm.raw_headers],
        body=_visible(body[:MAX_BODY_CHARS]),
        body_source=source,
        html_text=_visible(html_text[:MAX_BODY_CHARS]),
        truncated=truncated,
        links=[
            {"url": _visible(u.url), "host": u.host, "text": _visible(u.text or "")}
            for u in pm.urls[:MAX_LINKS]
        ],
        attachments=[
            {
                "filename": _visible(a.filename) or "(no name)",
                "type": a.content_type,
                "size": a.size,
            }
            for a in pm.attachments
        ],
        images=pm.images,
        html_tags=pm.html_tags,
        defects=pm.defects[:20],
    )


def explanation(entry: QuarantineEntry, top: int = 12) -> dict[str, Any]:
    """The verdict's reasons, heaviest first: rule hits and token contributions."""
    rules = sorted(entry.rules, key=lambda r: -abs(float(r.get("score", 0.0))))[:top]
    tokens = sorted(entry.tokens, key=lambda t: -abs(float(t.get("weight", 0.0))))[:top]
    peak = max([abs(float(t["weight"])) for t in tokens] or [1.0]) or 1.0
    for t in tokens:
        t["bar"] = round(100 * abs(float(t["weight"])) / peak)
    return {
        "reason": entry.reasons.get("reason", ""),
        "model_version": entry.reasons.get("model_version", ""),
        "list_decision": entry.reasons.get("list_decision"),
        "rules": rules,
        "tokens": tokens,
    }
