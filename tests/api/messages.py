"""Small RFC 5322 messages written for the API tests (no corpus messages in the repo)."""

from __future__ import annotations

import base64

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(
    sender: str = "carol@example.org",
    to: str = "alice@mailsift.test",
    subject: str = "Minutes of Tuesday's meeting",
    body: str = "Hi Alice,\n\nattached are the minutes. See you on Thursday.\n\nCarol\n",
    msgid: str = "<minutes-1@example.org>",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Tue, 01 Oct 2002 10:00:00 +0000\r\nMessage-ID: {msgid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{body}"
    ).encode()


HAM = message()
SPAM = message(
    sender="winner@lottery-prizes.example",
    subject="URGENT: you have WON $1,000,000 - claim your prize now!!!",
    body=(
        "Dear friend,\n\nCONGRATULATIONS! You have been selected to receive $1,000,000 CASH.\n"
        "Click here http://lottery-prizes.example/claim to claim your prize. Act now, limited "
        "time offer! Free money, no credit check, 100% guaranteed. Viagra cheap pills online.\n"
        "To be removed from our mailing list click here.\n"
    ),
    msgid="<win-1@lottery-prizes.example>",
)
GTUBE_MSG = message(subject="test", body=f"This is the GTUBE test:\n{GTUBE}\n", msgid="<g@x>")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
