"""Hand-written messages for HeaderEval's ``check_for_shifted_date`` (the DATE_IN_PAST_* and
DATE_IN_FUTURE_* rules), whose SpamAssassin 4.0.1 answers are recorded in
``data/sa_dates.json`` (``python -m tests.rules.sa_dates_cases --record PORT`` asks a
``spamd -L`` on 127.0.0.1:PORT through ``spamc -y`` and rewrites the file)."""

from __future__ import annotations

from pathlib import Path

from .sa_record import main, record_hits

DATA = Path(__file__).parent / "data" / "sa_dates.json"
# the rules the cases are about; the recorded answers keep only these
RULES = (
    "DATE_IN_PAST_03_06",
    "DATE_IN_PAST_06_12",
    "DATE_IN_PAST_12_24",
    "DATE_IN_PAST_24_48",
    "DATE_IN_PAST_96_XX",
    "DATE_IN_FUTURE_03_06",
    "DATE_IN_FUTURE_06_12",
    "DATE_IN_FUTURE_12_24",
    "DATE_IN_FUTURE_24_48",
    "DATE_IN_FUTURE_48_96",
    "T_DATE_IN_FUTURE_96_Q",
    "DATE_IN_FUTURE_Q_PLUS",
)


def _received(time: str, by: str = "mx.example.net", frm: str = "mail.shop.example") -> str:
    return (
        f"Received: from {frm} (mail.shop.example [203.0.113.5])\r\n"
        f"\tby {by} with ESMTP id 4A1B2C3D; {time}\r\n"
    )


def message(received: list[str], *dates: tuple[str, str]) -> bytes:
    """The Received headers (as given, top first), then the ``(name, value)`` dates."""
    head = "".join(received) + "From: news@shop.example\r\nTo: <reader@example.net>\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in dates)
    head += "Subject: Our news\r\nMessage-ID: <case@shop.example>\r\n"
    return (head + "\r\nHello, this is our news.\r\n").encode()


DEC7 = "Mon, 7 Dec 2026"


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    rcvd_10 = [_received(f"{DEC7} 10:00:00 +0000")]
    return {
        "date_5h_before": message(rcvd_10, ("Date", f"{DEC7} 05:00:00 +0000")),
        "date_on_time": message(rcvd_10, ("Date", f"{DEC7} 10:00:00 +0000")),
        "date_30h_after": message(rcvd_10, ("Date", "Tue, 8 Dec 2026 16:00:00 +0000")),
        # Resent-Date is read before Date: a forward a day after the original
        "resent_date_first": message(
            rcvd_10,
            ("Date", "Sun, 6 Dec 2026 09:00:00 +0000"),
            ("Resent-Date", f"{DEC7} 09:30:00 +0000"),
        ),
        # an unparsable Resent-Date: the next one, then Date
        "resent_date_unparsable": message(
            rcvd_10,
            ("Resent-Date", "yesterday"),
            ("Date", f"{DEC7} 02:00:00 +0000"),
        ),
        # a Date without a zone is UTC
        "date_without_zone": message(rcvd_10, ("Date", f"{DEC7} 04:00:00")),
        # the oldest hop's timestamp equal to Date is dropped when others remain
        "oldest_equal_dropped": message(
            [_received(f"{DEC7} 10:00:00 +0000"), _received(f"{DEC7} 05:00:00 +0000")],
            ("Date", f"{DEC7} 05:00:00 +0000"),
        ),
        # an equal timestamp on a newer hop stays
        "newer_equal_kept": message(
            [_received(f"{DEC7} 05:00:00 +0000"), _received(f"{DEC7} 01:00:00 +0000")],
            ("Date", f"{DEC7} 05:00:00 +0000"),
        ),
        # the timestamp is the first date-like text of the header, with or without ";"
        "received_time_without_semicolon": message(
            [
                "Received: from mail.shop.example by mx.example.net id 4A1B; Monday\r\n"
                f"\tprocessed {DEC7} 15:00:00 +0000\r\n"
            ],
            ("Date", f"{DEC7} 10:00:00 +0000"),
        ),
        # a local hop over fetchmail's is set aside: the Internet hop decides
        "fetchmail_hops_skipped": message(
            [
                "Received: from localhost [127.0.0.1]\r\n\tby home.example with IMAP;"
                f" {DEC7} 10:20:00 +0000\r\n",
                "Received: from pop.example.net\r\n\tby localhost with POP3 (fetchmail-6.4.37)"
                f" for <me@home.example>; {DEC7} 10:10:00 +0000\r\n",
                _received(f"{DEC7} 15:00:00 +0000"),
            ],
            ("Date", f"{DEC7} 10:00:00 +0000"),
        ),
        # a local hop without fetchmail's after it stays
        "local_hop_kept": message(
            [
                "Received: from localhost [127.0.0.1]\r\n\tby home.example with SMTP;"
                f" {DEC7} 10:20:00 +0000\r\n",
                _received(f"{DEC7} 15:00:00 +0000"),
            ],
            ("Date", f"{DEC7} 10:00:00 +0000"),
        ),
        # no Received timestamp at all: no difference
        "no_received": message([], ("Date", "Mon, 7 Dec 2020 10:00:00 +0000")),
        "ten_days_ahead": message(rcvd_10, ("Date", "Thu, 17 Dec 2026 10:00:00 +0000")),
        "far_future": message(rcvd_10, ("Date", "Mon, 7 Dec 2029 10:00:00 +0000")),
        "far_past": message(rcvd_10, ("Date", "Mon, 7 Dec 2020 10:00:00 +0000")),
    }


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


if __name__ == "__main__":
    main(__doc__, record)
