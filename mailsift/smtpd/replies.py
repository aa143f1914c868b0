"""The one place that turns decisions into SMTP replies (RFC 5321 4.2, RFC 3463 codes).

Checks return actions, the scorer returns a verdict; neither formats a reply. Here:

* check TEMPFAIL -> ``451 4.7.1 <reason>``; check REJECT -> ``550 5.7.1 <reason>`` (a check
  may supply its own enhanced code, e.g. ``5.7.23`` for SPF or ``5.7.1`` plus ``554`` for a
  virus: an enhanced code starting with ``5`` selects 550 unless the check asks for 554 via
  ``details["code"]``);
* verdict REJECT -> ``550 5.7.1 Message rejected as spam``; HOLD -> ``250 2.0.0`` only after the
  quarantine wrote the message durably; HAM/SPAM -> the next hop's answer (proxy) or
  ``250 2.0.0`` after the spool's fsync;
* infrastructure failures (scorer down, quarantine failure, spool failure) -> ``451 4.3.0``
  (tempfail: the client retries, nothing is lost and no bounce is ever generated).

Reply text is sanitised: one line, printable ASCII, at most 400 characters.
"""

from __future__ import annotations

from mailsift.smtpd.checks.base import CheckAction, CheckResult
from mailsift.verdict import Verdict

OK_SENDER = "250 2.1.0 OK"
OK_RCPT = "250 2.1.5 OK"
TOO_MANY_RCPTS = "452 4.5.3 Error: too many recipients"
TEMP_LOCAL_ERROR = "451 4.3.0 Error: local error in processing, try again later"
SCORER_DOWN = "451 4.3.0 Error: content scanner unavailable, try again later"
SMUGGLING = "550 5.5.2 Error: bare <LF> or <CR> line ending before '.' (possible SMTP smuggling)"
BARE_NEWLINE = "550 5.5.2 Error: bare <LF> or <CR> received, use <CR><LF>"


def clean_text(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:limit]


def check_reply(result: CheckResult) -> str | None:
    """The reply for a check's action, or None when the check has no objection."""
    if result.action is CheckAction.TEMPFAIL:
        code, enh = 451, result.enhanced_code or "4.7.1"
        if not enh.startswith("4"):
            enh = "4.7.1"
        default = "temporary failure, try again later"
    elif result.action is CheckAction.REJECT:
        code = int(result.details.get("code", 550)) if result.details else 550
        if code < 500 or code > 599:
            code = 550
        enh = result.enhanced_code or "5.7.1"
        if not enh.startswith("5"):
            enh = "5.7.1"
        default = "rejected by local policy"
    else:
        return None
    return f"{code} {enh} {clean_text(result.reason or default)}"


def verdict_reject(verdict: Verdict) -> str:
    why = f" ({clean_text(verdict.reason, 200)})" if verdict.reason else ""
    return f"550 5.7.1 Message rejected as spam{why}"


def accepted(queue_id: str, how: str = "queued") -> str:
    return f"250 2.0.0 OK: {how} as {queue_id}"


def from_next_hop(code: int, message: str) -> str:
    """Relay the next hop's refusal to our client (we never turn a 5xx into a bounce)."""
    text = clean_text(message) or "next hop refused the message"
    if not text[:1].isdigit():
        text = f"{'4.4.0' if code < 500 else '5.0.0'} {text}"
    return f"{code} {text}"
