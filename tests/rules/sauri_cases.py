"""Hand-written messages for the URI list SpamAssassin's ``uri`` rules read (each URI
source of HTML.pm's html_uri, a <base>, redirect parameters, %-encoding, schemeless and
numeric hosts), whose SpamAssassin 4.0.1 answers are recorded in ``data/sauri_sa.json``.

``python -m tests.rules.sauri_cases --record PORT`` asks a ``spamd -L`` on 127.0.0.1:PORT
through ``spamc -y`` for the scoring rules, and ``spamassassin -L`` with one extra rule,
``meta T_MS_UPPERCASE_URI __UPPERCASE_URI``, for the sub-rule spamc does not report; it
rewrites the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "sauri_sa.json"
# the scoring uri rules the cases are about, and the exposed sub-rule
RULES = ("NORMAL_HTTP_TO_IP", "WEIRD_PORT")
EXPOSED = {"T_MS_UPPERCASE_URI": "__UPPERCASE_URI"}
EXPOSE_CF = ("meta T_MS_UPPERCASE_URI __UPPERCASE_URI", "score T_MS_UPPERCASE_URI 0.001")

HEAD = (
    "From: Bank <service@bank.example>\r\nTo: reader@example.net\r\nSubject: Your account\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <case@bank.example>\r\n"
    "MIME-Version: 1.0\r\n"
)


def _html(body: str) -> bytes:
    doc = f"<html><head><title>Account</title></head><body><p>Please review your account.</p>{body}</body></html>"
    return (HEAD + "Content-Type: text/html; charset=utf-8\r\n\r\n" + doc + "\r\n").encode()


def _text(body: str) -> bytes:
    return (HEAD + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


def cases() -> dict[str, bytes]:
    return {
        # each html_uri source with a public IP host
        "area_href": _html(
            '<img src="cid:map" usemap="#m"><map name="m">'
            '<area shape="rect" coords="0,0,9,9" href="http://45.33.12.7/login"></map>'
        ),
        "img_src": _html('<img src="http://45.33.12.8/logo.png" width="10" height="10">'),
        "table_background": _html(
            '<table background="http://45.33.12.9/bg.gif"><tr><td>Hi</td></tr></table>'
        ),
        "td_background": _html(
            '<table><tr><td background="http://45.33.12.9/bg.gif">Hi</td></tr></table>'
        ),
        "iframe_src": _html('<iframe src="http://45.33.12.10/frame.html"></iframe>'),
        "link_href": _html('<link rel="stylesheet" href="http://45.33.12.14/s.css">'),
        "base_href": _html(
            '<base href="http://45.33.12.17/dir/index.html"><a href="page.html">here</a>'
        ),
        "saferedirect": _html(
            '<a href="https://bank.example/" data-saferedirecturl="http://45.33.12.18/r">bank</a>'
        ),
        "form_action": _html('<form action="http://45.33.12.19/post"><input name="p"></form>'),
        # cleaned variants of an anchor: %-encoding, a redirect parameter, a configured
        # redirector, schemeless, numeric hosts; a private address does not count
        "percent_encoded_host": _html('<a href="http://%34%35.33.12.12/x">log in</a>'),
        "redirect_parameter": _html(
            '<a href="http://track.example.com/click?u=http://45.33.12.11/x&amp;id=1">log in</a>'
        ),
        "google_redirector": _html(
            '<a href="https://www.google.com/url?q=http%3A%2F%2F45.33.12.15%2Fx&amp;sa=D">log in</a>'
        ),
        "schemeless_href": _html('<a href="45.33.12.13/login">log in</a>'),
        "hex_host": _html('<a href="http://0x2d210c10/login">log in</a>'),
        "decimal_host": _html('<a href="http://757140496/login">log in</a>'),
        "private_ip": _html('<a href="http://192.168.1.1/login">router</a>'),
        "weird_port": _html('<img src="http://img.bank.example:8081/logo.png">'),
        "text_ip": _text("Log in at http://45.33.12.20/login today."),
        # relative URIs are on SpamAssassin's list as written: the uppercase sub-rule
        # reads them, unless a <base> makes them absolute
        "relative_script_upper": _html('<script src="/js/Main.js"></script>'),
        "relative_link_upper": _html('<link rel="stylesheet" href="css/Site.css">'),
        "relative_img_lower": _html('<img src="images/logo.png">'),
        "relative_with_base": _html(
            '<base href="http://bank.example/dir/"><img src="images/Logo.png">'
        ),
    }


def record(port: int) -> None:
    hits: dict[str, list[str]] = {}
    cf = [f"--cf={line}" for line in EXPOSE_CF]
    for name, raw in cases().items():
        out = subprocess.run(
            ["spamc", "-p", str(port), "-y"], input=raw, capture_output=True, check=True
        ).stdout.decode()
        got = {r for r in out.strip().split(",") if r in RULES}
        report = subprocess.run(
            ["spamassassin", "-L", *cf], input=raw, capture_output=True, check=True
        ).stdout.decode()
        head = report.replace("\r\n", "\n").split("\n\n", 1)[0].replace("\n\t", " ")
        status = next(line for line in head.splitlines() if line.startswith("X-Spam-Status:"))
        got |= {sub for rule, sub in EXPOSED.items() if rule in status.replace(",", " ").split()}
        hits[name] = sorted(got)
    DATA.write_text(
        json.dumps({"rules": [*RULES, *EXPOSED.values()], "hits": hits}, indent=1) + "\n"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        record(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m tests.rules.sauri_cases --record PORT")
