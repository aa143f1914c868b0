"""Hand-written messages for the rules that read addresses and names (``From:addr``,
``From:name``, FreeMail, FromNameSpoof, the PayPal tests), whose SpamAssassin 4.0.1
answers are recorded in ``data/sa_addresses.json`` (``python -m
tests.rules.sa_addresses_cases --record PORT`` asks a ``spamd -L`` on 127.0.0.1:PORT
through ``spamc -y`` and rewrites the file), and the values of ``sa_addresses_values``:
SpamAssassin's ``Util::parse_header_addresses`` of each, recorded in
``data/sa_address_values.json`` (``--record-values`` runs it through perl)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .sa_record import record_hits

DATA = Path(__file__).parent / "data" / "sa_addresses.json"
VALUES = Path(__file__).parent / "data" / "sa_address_values.json"
# the rules the cases are about; the recorded answers keep only these
RULES = (
    "POSSIBLE_PAYPAL_PHISH_02",
    "FROM_PAYPAL_SPOOF",
    "FREEMAIL_FROM",
    "FROM_STARTS_WITH_NUMS",
    "APOSTROPHE_FROM",
    "HK_NAME_DRUGS",
    "T_FROMNAME_SPOOFED_EMAIL",
    "FREEMAIL_FORGED_REPLYTO",
    "FREEMAIL_REPLYTO",
)

HEAD = (
    "Received: from mx.sender.example (mx.sender.example [203.0.113.7])\r\n"
    "\tby mail.example.net (Postfix) with ESMTP id 4AB12\r\n"
    "\tfor <reader@example.net>; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    "To: reader@example.net\r\nSubject: Your account\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <case@sender.example>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
)
BODY = "Please confirm your account details today.\r\n"

# From (and other) header values in odd forms, each a case of its own
FROMS = {
    "bare_twice_paypal": "service@paypal.com <service@paypal.com>",
    "bare_twice_numbers": "12345deals@gmail.com <12345deals@gmail.com>",
    "quoted_comma_name": '"Smith, John" <12345john@gmail.com>',
    "unquoted_comma_name": "Smith, John <12345john@gmail.com>",
    "group": "Friends: 123abc@yahoo.com, other@example.com;",
    "comment_name": "999deals@hotmail.com (PayPal.com Service)",
    "missing_brackets": "PayPal.com service@paypal.com",
    "missing_close_bracket": "PayPal.com <service@paypal.com",
    "encoded_name": "=?UTF-8?B?UGF5UGFsLmNvbSBTZWN1cml0eQ==?= <alerts@secure-mail.example>",
    "encoded_word_around_address": '=?UTF-8?Q?"PayPal"_<123service@gmail.com>?=',
    "empty_brackets": "<>",
    "apostrophe": "o'brien@example.com",
    "name_is_other_address": '"billing@bank.example" <scam@evil.example>',
    "single_quoted_name": "'Cialis Shop' <shop@pharmacy.example>",
    "duplicate_enclosures": "PayPal.com <a@paypal.com> <b@paypal.com>",
    "quoted_local_part": '"john smith"@gmail.com',
}


def _message(from_value: str, extra: str = "") -> bytes:
    return (HEAD + f"From: {from_value}\r\n{extra}\r\n" + BODY).encode()


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    out = {name: _message(v) for name, v in FROMS.items()}
    out["empty_from"] = _message("")
    out["reply_to_bare_twice"] = _message(
        "Shop <shop@store.example>", "Reply-To: 123abc@yahoo.com <123abc@yahoo.com>\r\n"
    )
    out["folded_from"] = _message("PayPal.com\r\n\t<service@paypal.com>")
    return out


def values() -> list[str]:
    """Header values for the parser's table: the cases' and more odd forms."""
    return [
        *FROMS.values(),
        "",
        "   ",
        "a@b.example, c@d.example",
        "Name <a@b.example>; Other <c@d.example>",
        "undisclosed-recipients:;",
        "group: ;",
        '"a\\"b" <x@y.example>',
        '"x@y.example" <x@y.example>',
        "x@y.example <x@y.example> (comment)",
        "<x@y.example> (A Name)",
        "Name <x(comment)@y.example>",
        '""@y.example',
        '"@y.example',
        "x@localhost <x@localhost>",
        "x@y_z.example <x@y_z.example>",
        "x@[192.0.2.1]",
        "Name <not an address>",
        "Name <x@y.example",
        "Name x@y.example>",
        "x@y.example@z.example",
        "<x@y.example><x@y.example>",
        "Name\n\t<x@y.example>",
        "'x@y.example'",
        "a\\\\b <x@y.example>",
        '=?utf-8?Q?"Foobar"?=<info=foobar.com@mlsend.example>',
        "John (Work) Smith <j@w.example>",
        "\"Smith, John\" <j@w.example>, 'Jane' <k@w.example>",
    ]


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


_PERL = r"""
use Mail::SpamAssassin::Util;
use JSON::PP;
local $/;
my $vals = JSON::PP->new->decode(<STDIN>);
my @out;
for my $v (@$vals) {
  utf8::encode($v);
  my @r = Mail::SpamAssassin::Util::parse_header_addresses($v);
  push @out, [$v, [map { [$_->{phrase}, $_->{address}] } @r]];
}
print JSON::PP->new->canonical->encode(\@out);
"""


def record_values() -> None:
    res = subprocess.run(
        ["perl", "-I/usr/share/perl5", "-e", _PERL],
        input=json.dumps(values()).encode(),
        capture_output=True,
        check=True,
    )
    table = json.loads(res.stdout.decode("utf-8"))
    VALUES.write_text(json.dumps({"spamassassin": "4.0.1", "values": table}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        record(int(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "--record-values":
        record_values()
    else:
        sys.exit(__doc__)
