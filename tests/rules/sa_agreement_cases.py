"""Hand-written messages for stock rules whose hits depend on how SpamAssassin 4.0.1 reads
a message: the ``ALL-EXTERNAL`` header range (``__DOS_RELAYED_EXT``: NO_FM_NAME_IP_HOSTN,
DOS_OE_TO_MX), ``check_illegal_chars`` on UTF-8 headers, MIMEEval's
``mime_base64_encoded_text``, ``mime_qp_long_line`` and ``check_for_mime_html_only``,
``html_tag_exists`` on end tags and ``check_for_faraway_charset``. Their SpamAssassin
answers are recorded in ``data/sa_agreement.json`` (``python -m
tests.rules.sa_agreement_cases --record PORT`` asks a ``spamd -L`` on 127.0.0.1:PORT
through ``spamc -y`` and rewrites the file)."""

from __future__ import annotations

from pathlib import Path

from .sa_record import main, record_hits

DATA = Path(__file__).parent / "data" / "sa_agreement.json"
# the rules the cases are about; the recorded answers keep only these
RULES = (
    "NO_FM_NAME_IP_HOSTN",
    "DOS_OE_TO_MX",
    "SUBJ_ILLEGAL_CHARS",
    "SUBJECT_NEEDS_ENCODING",
    "MIME_BASE64_TEXT",
    "MIME_QP_LONG_LINE",
    "MIME_HTML_ONLY",
    "HTML_MIME_NO_HTML_TAG",
    "FORGED_OUTLOOK_HTML",
    "CHARSET_FARAWAY",
)

DATE = "Mon, 7 Dec 2026 10:00:00 +0000"
# handed over inside the site (a private address: trusted and internal), then from the
# sender's host, whose reverse DNS name holds its IP address
INTERNAL = (
    "Received: from mail.example.net (mail.example.net [10.1.1.1]) by mx.example.net"
    f" (Postfix) with ESMTP id 4A1; {DATE}\n"
)
EXTERNAL = (
    "Received: from 203-0-113-9.dyn.example.com (203-0-113-9.dyn.example.com [203.0.113.9])"
    f" by mail.example.net (Postfix) with ESMTP id 4A2; {DATE}\n"
)
# a Received header SpamAssassin cannot parse (no IP address)
UNPARSEABLE = f"Received: by mx.example.net (Postfix, from userid 1001) id 4A0; {DATE}\n"
# the hop before the sender's host: another Received header in the external part
EARLIER = f"Received: from pc by 203-0-113-9.dyn.example.com with SMTP id 4A3; {DATE}\n"


def _message(
    received: str = INTERNAL + EXTERNAL,
    headers: str = "",
    body: str = "Hello, see you on Tuesday.\n",
    ctype: str = "text/plain; charset=us-ascii",
    from_: str = "alice@example.com",
    subject: str = "Tuesday",
) -> bytes:
    return (
        received
        + f"From: {from_}\nTo: reader@example.net\nSubject: {subject}\nDate: {DATE}\n"
        + "Message-ID: <case@example.com>\nMIME-Version: 1.0\n"
        + headers
        + f"Content-Type: {ctype}\n\n"
        + body
    ).encode("utf-8", "surrogateescape")


def _raw_subject(subject: bytes) -> bytes:
    return _message(subject="SUBJECT").replace(b"Subject: SUBJECT", b"Subject: " + subject)


def _multipart(kind: str, *parts: str, headers: str = "") -> bytes:
    body = "".join(f"--B\n{p}\n" for p in parts) + "--B--\n"
    return _message(headers=headers, ctype=f'multipart/{kind}; boundary="B"', body=body)


OE = "X-Mailer: Microsoft Outlook Express 6.00.2900.5512\n"
OUTLOOK = "X-Mailer: Microsoft Outlook 16.0\n"
HTML = "<html><body><p>Hello, see you on Tuesday.</p></body></html>"
B64_TEXT = "SGVsbG8sIHNlZSB5b3Ugb24gVHVlc2RheS4K"  # "Hello, see you on Tuesday.\n"
QP = "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: quoted-printable\n"


def _qp_line(n: int) -> str:
    """A quoted-printable line of ``n`` characters (no soft break)."""
    return ("Tuesday " * 20)[:n]


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    return {
        # -- ALL-EXTERNAL: the header lines from the first external Received header on --
        # one external Received header: no __DOS_RELAYED_EXT, NO_FM_NAME_IP_HOSTN fires
        "ext_single_relay": _message(),
        # a second Received header in the external part (unparseable too): relayed
        "ext_relayed": _message(INTERNAL + EXTERNAL + EARLIER),
        # an unparseable Received header inside the internal part counts in the index:
        # the external part still starts at the sender's host's header
        "ext_unparseable_internal": _message(UNPARSEABLE + INTERNAL + EXTERNAL),
        "ext_unparseable_internal_relayed": _message(UNPARSEABLE + INTERNAL + EXTERNAL + EARLIER),
        # Outlook Express sent straight to the MX, or relayed before it
        "oe_direct_to_mx": _message(headers=OE),
        "oe_relayed": _message(INTERNAL + EXTERNAL + EARLIER, headers=OE),
        # -- check_illegal_chars: valid UTF-8 without controls is exempt --
        "subject_utf8": _raw_subject("Grüße aus München".encode()),
        "subject_latin1": _raw_subject("Grüße aus München".encode("latin-1")),
        "subject_utf8_with_control": _raw_subject("Grüße\x01 aus München".encode()),
        # -- mime_base64_encoded_text: ASCII (or no) charset, not attachment or inline --
        "b64_text_ascii": _message(
            headers="Content-Transfer-Encoding: base64\n", body=B64_TEXT + "\n"
        ),
        "b64_text_utf8": _message(
            headers="Content-Transfer-Encoding: base64\n",
            ctype="text/plain; charset=utf-8",
            body=B64_TEXT + "\n",
        ),
        "b64_text_no_charset": _message(
            headers="Content-Transfer-Encoding: base64\n", ctype="text/plain", body=B64_TEXT + "\n"
        ),
        "b64_text_inline": _multipart(
            "mixed",
            "Content-Type: text/plain\n\nHello.\n",
            "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n"
            f"Content-Disposition: inline\n\n{B64_TEXT}\n",
        ),
        # the last Content-Transfer-Encoding is the one read
        "b64_text_last_cte_7bit": _multipart(
            "mixed",
            "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n"
            "Content-Transfer-Encoding: 7bit\n\nHello, see you on Tuesday.\n",
        ),
        # -- mime_qp_long_line: an undecoded line over 78 characters plus its newline --
        "qp_line_78": _message(
            headers="Content-Transfer-Encoding: quoted-printable\n", body=_qp_line(78) + "\n"
        ),
        "qp_line_79": _message(
            headers="Content-Transfer-Encoding: quoted-printable\n", body=_qp_line(79) + "\n"
        ),
        # CRLF line ends throughout: the CR is not counted
        "qp_line_78_crlf": _message(
            headers="Content-Transfer-Encoding: quoted-printable\n", body=_qp_line(78) + "\n"
        ).replace(b"\n", b"\r\n"),
        # LF line ends but this line's CRLF: the CR counts
        "qp_line_78_lone_crlf": _message(
            headers="Content-Transfer-Encoding: quoted-printable\n",
            body=_qp_line(78) + "\r\nsee you\n",
        ),
        "qp_line_spam_marker": _message(
            headers="Content-Transfer-Encoding: quoted-printable\n",
            body="SPAM: " + _qp_line(90) + "\n",
        ),
        # the line before a boundary has no newline: 79 characters are not too long
        "qp_line_79_before_boundary": _multipart("mixed", QP + "\n" + _qp_line(79)),
        "qp_line_80_before_boundary": _multipart("mixed", QP + "\n" + _qp_line(80)),
        "qp_line_in_attached_message": _multipart(
            "mixed",
            "Content-Type: text/plain\n\nForwarded.\n",
            "Content-Type: message/rfc822\n\nFrom: x@example.org\nSubject: inner\n"
            + QP
            + "\n"
            + _qp_line(100)
            + "\n",
        ),
        "qp_last_cte_7bit": _message(
            headers="Content-Transfer-Encoding: quoted-printable\nContent-Transfer-Encoding: 7bit\n",
            body=_qp_line(100) + "\n",
        ),
        # -- check_for_mime_html_only: MIME part types, not their text --
        "html_single": _message(ctype="text/html; charset=us-ascii", body=HTML + "\n"),
        "html_alt_empty_text": _multipart(
            "alternative",
            "Content-Type: text/plain; charset=us-ascii\n\n",
            f"Content-Type: text/html; charset=us-ascii\n\n{HTML}",
        ),
        "html_with_text_attachment": _multipart(
            "mixed",
            f"Content-Type: text/html; charset=us-ascii\n\n{HTML}",
            "Content-Type: text/plain; charset=us-ascii\n"
            'Content-Disposition: attachment; filename="notes.txt"\n\nNotes.',
        ),
        "html_with_image": _multipart(
            "mixed",
            f"Content-Type: text/html; charset=us-ascii\n\n{HTML}",
            "Content-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlhAQABAAAAACw=",
        ),
        "outlook_html_alt_empty_text": _multipart(
            "alternative",
            "Content-Type: text/plain; charset=us-ascii\n\n",
            f"Content-Type: text/html; charset=us-ascii\n\n{HTML}",
            headers=OUTLOOK,
        ),
        "outlook_html_single": _message(
            headers=OUTLOOK, ctype="text/html; charset=us-ascii", body=HTML + "\n"
        ),
        # -- html_tag_exists: an end tag counts --
        "html_end_tag_only": _message(
            ctype="text/html; charset=us-ascii",
            body="<body><p>Hello, see you on Tuesday.</p></body></html>\n",
        ),
        "html_no_html_tag": _message(
            ctype="text/html; charset=us-ascii",
            body="<body><p>Hello, see you on Tuesday.</p></body>\n",
        ),
        # -- check_for_faraway_charset: never, with the default ok_locales all --
        "charset_ascii_8bit_body": _message(body="Gr\udcfc\udcdfe aus M\udcfcnchen.\n"),
        "charset_koi8r": _message(
            ctype="text/plain; charset=koi8-r",
            body="\udcf0\udcd2\udcc9\udcd7\udcc5\udcd4 \udcd7\udcd3\udcc5\udcd7 \udcd4\udcc1\udccd\n"
            * 4,
        ),
    }


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


if __name__ == "__main__":
    main(__doc__, record)
