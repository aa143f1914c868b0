"""``SpamdServer`` in this process on a real loopback socket: compression, TLS with the real
``spamc -S``, limits and timeouts, refused clients, TELL switched off, a store that fails,
and the request Exim's ``spamd_address`` sends (parsed the way Exim's spam.c parses it)."""

from __future__ import annotations

import errno
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mailsift.config import Settings
from mailsift.spamd.server import SpamdServer
from tests.spamd import spamd401
from tests.spamd.conftest import (
    GTUBE,
    PLAIN_HAM,
    request,
    spamc,
    spamc_request,
    spamd_test_settings,
)


@pytest.fixture
def make_server(
    tmp_path: Path, test_settings: Settings, small_model_dir: Path
) -> Iterator[Callable[..., SpamdServer]]:
    """make_server(**spamd_settings) -> a started SpamdServer on a free port, with a
    ScoringService over its own store and its own copy of the small model."""
    from mailsift.classifier.model import SpamModel
    from mailsift.classifier.scorer import Scorer, load_rules
    from mailsift.service import ScoringService

    made: list[tuple[SpamdServer, Any]] = []

    def make(feedback: dict[str, object] | None = None, **spamd: object) -> SpamdServer:
        settings = spamd_test_settings(
            test_settings, tmp_path / f"var{len(made)}", small_model_dir, port=0, **spamd
        )
        if feedback:
            settings = settings.model_copy(
                update={"feedback": settings.feedback.model_copy(update=feedback)}
            )
        settings.paths.var_dir.mkdir(parents=True)
        scorer = Scorer(SpamModel.load(small_model_dir), load_rules(settings), settings)
        service = ScoringService(settings, scorer=scorer)
        server = SpamdServer(settings, service).start()
        made.append((server, service))
        return server

    yield make
    for server, service in made:
        server.stop()
        service.close()


def test_zlib_compressed_requests(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server()
    assert srv.port
    plain = request(srv.port, spamc_request("CHECK", GTUBE))
    z = zlib.compress(GTUBE)
    packed = request(srv.port, spamc_request("CHECK", z, ("Compress", "zlib")))
    assert packed == plain == spamd401.CHECK_GTUBE
    sym = request(
        srv.port, spamc_request("SYMBOLS", zlib.compress(PLAIN_HAM), ("Compress", "zlib"))
    )
    assert sym.startswith(b"SPAMD/1.1 0 EX_OK\r\nContent-length: ")
    # a broken stream, and one without Content-length: spamd's EX_UNAVAILABLE replies
    bad = request(srv.port, spamc_request("CHECK", z[:-6], ("Compress", "zlib")))
    assert bad == b"SPAMD/1.0 69 Service Unavailable: zlib: failed to find end of zlib stream\r\n"
    nolen = request(srv.port, b"CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\n" + z)
    assert nolen.startswith(b"SPAMD/1.0 69 Service Unavailable: Compress requires Content-length")


def test_size_limit_also_after_inflation(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server(max_message_size=16384)
    assert srv.port
    big = GTUBE + b"x" * 20000
    over = request(srv.port, spamc_request("CHECK", big))
    assert over.startswith(b"SPAMD/1.0 76 Bad header line: (message of 20")
    bomb = zlib.compress(b"a" * 10_000_000)  # ~10 KB on the wire
    assert len(bomb) < 16384
    inflated = request(srv.port, spamc_request("CHECK", bomb, ("Compress", "zlib")))
    assert inflated.startswith(b"SPAMD/1.0 76 Bad header line: (message over the 16384 bytes")
    streamed = request(srv.port, b"CHECK SPAMC/1.5\r\n\r\n" + big)  # no Content-length
    assert streamed.startswith(b"SPAMD/1.0 76 ")
    long_line = request(srv.port, b"CHECK SPAMC/1.5\r\nUser: " + b"u" * 100_000 + b"\r\n\r\n")
    assert long_line == b"SPAMD/1.0 76 Bad header line: (line too long)\r\n"
    assert request(srv.port, b"PING SPAMC/1.5\r\n\r\n") == spamd401.PONG


def test_slow_client_gets_a_timeout_reply(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server(timeout=0.5)
    assert srv.port
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nhalf a mess")
        reply = s.recv(4096)  # the client never sends the rest nor closes
    assert (
        reply == b"SPAMD/1.0 79 Timeout: (0.5 second socket timeout reading input from client)\r\n"
    )
    assert request(srv.port, spamc_request("CHECK", GTUBE)) == spamd401.CHECK_GTUBE


def test_clients_outside_allowed_networks_are_refused(
    make_server: Callable[..., SpamdServer],
) -> None:
    srv = make_server(allowed_networks=["192.0.2.0/24"])
    assert srv.port
    try:  # closed unanswered, at once: an empty read, or a reset / "not connected" when the
        # server's close overtook the request (the race decides which)
        assert request(srv.port, spamc_request("CHECK", GTUBE)) == b""
    except OSError as exc:
        assert exc.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE), exc
    res = spamc(srv.port, "-c", input=GTUBE)
    assert res.returncode != 0 and res.stdout == b"0/0\n"


def test_tell_is_off_unless_allowed(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server(allow_tell=False)
    assert srv.port
    reply = request(
        srv.port,
        spamc_request(
            "TELL",
            PLAIN_HAM,
            ("User", "a@example.org"),
            ("Message-class", "spam"),
            ("Set", "local"),
        ),
    )
    assert reply.startswith(b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled")
    assert srv.service.store.feedback.count_since(0.0) == 0


def test_tell_needs_a_user_and_a_class(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server()
    assert srv.port
    no_user = request(
        srv.port, spamc_request("TELL", PLAIN_HAM, ("Message-class", "spam"), ("Set", "local"))
    )
    assert no_user.startswith(b"SPAMD/1.0 76 Bad header line: (TELL needs a User header")
    no_class = request(
        srv.port, spamc_request("TELL", PLAIN_HAM, ("User", "a@x.org"), ("Set", "local"))
    )
    assert no_class.startswith(b"SPAMD/1.0 76 ")
    bad_class = request(
        srv.port,
        spamc_request(
            "TELL", PLAIN_HAM, ("User", "a@x.org"), ("Message-class", "eggs"), ("Set", "local")
        ),
    )
    assert (
        bad_class
        == b"SPAMD/1.0 76 Bad header line: (Message-class header contains invalid class)\r\n"
    )
    assert srv.service.store.feedback.count_since(0.0) == 0


def test_bare_user_names_take_the_user_domain(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server(user_domain="Example.ORG")
    assert srv.identity("Alice") == "alice@example.org"
    assert srv.identity("bob@example.net") == "bob@example.net"
    assert srv.port
    reply = request(
        srv.port,
        spamc_request(
            "TELL", PLAIN_HAM, ("User", "frank"), ("Message-class", "ham"), ("Set", "local")
        ),
    )
    assert reply == spamd401.TELL_LEARNED
    assert [r.user for r in srv.service.store.feedback.recent()] == ["frank@example.org"]


def _tempfails(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "mailsift_tempfails_total", {"service": "spamd", "reason": reason}
        )
        or 0.0
    )


def test_store_failure_is_a_tempfail_not_a_verdict(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server()
    assert srv.port
    assert request(srv.port, spamc_request("CHECK", PLAIN_HAM)).startswith(b"SPAMD/1.1 0 EX_OK")
    before = _tempfails("store")
    srv.service.store.close()  # the verdict can no longer be recorded
    reply = request(srv.port, spamc_request("CHECK", GTUBE))
    assert reply.startswith(b"SPAMD/1.0 75 Temporary failure: ")
    assert _tempfails("store") == before + 1  # counted, as the SMTP filter's are
    # spamc reads header lines after the status line whatever its code: an error reply
    # ends its read (EX_IOERR), the same as with spamd's error replies
    res = spamc(srv.port, "-c", input=GTUBE)
    assert res.returncode == 74 and res.stdout == b"0/0\n"
    assert request(srv.port, b"PING SPAMC/1.5\r\n\r\n") == spamd401.PONG


def test_spamc_over_tls(make_server: Callable[..., SpamdServer], tmp_path: Path) -> None:
    from mailsift.smtpd.tls import generate_selfsigned

    cert, key = generate_selfsigned(tmp_path / "tls", "localhost")
    srv = make_server(tls_cert=cert, tls_key=key)
    assert srv.port
    res = spamc(srv.port, "-S", "--ssl-ca-file", str(cert), "-c", input=GTUBE)
    assert (res.returncode, res.stdout) == (1, b"1000.0/5.0\n"), res.stderr
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"PING SPAMC/1.5\r\n\r\n")
            assert s.recv(100) == spamd401.PONG
    # plain text on the TLS port: no answer, and the server goes on
    assert request(srv.port, spamc_request("CHECK", GTUBE), timeout=30) == b""
    assert spamc(srv.port, "-S", "--ssl-ca-file", str(cert), "-c", input=PLAIN_HAM).returncode == 0


def exim_spam_condition(port: int, message: bytes, user: str) -> tuple[float, float, str]:
    """What Exim's ``spam = USER`` ACL condition does with ``spamd_address = 127.0.0.1 PORT``
    (src/spam.c, SpamAssassin variant): the request line and headers it writes, the spooled
    message with LF line ends, a half-close, then its sscanf of the reply. Returns
    ($spam_score, the threshold, $spam_report)."""
    head = f"REPORT SPAMC/1.2\r\nUser: {user}\r\nContent-length: {len(message)}\r\n\r\n"
    reply = request(port, head.encode() + message)
    # sscanf(buf, "SPAMD/%7s 0 EX_OK\r\nSpam: %*s ; %lf / %lf\r\n\r\n%n", ...) must give 3
    m = re.match(rb"SPAMD/(\S{1,7}) 0 EX_OK\r\nSpam: \S+ ; (\S+) / (\S+)\r\n\r\n", reply)
    assert m is not None, reply[:200]
    return float(m.group(2)), float(m.group(3)), reply[m.end() :].decode()


def test_exim_spamd_address_request(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server()
    assert srv.port
    score, threshold, report = exim_spam_condition(srv.port, GTUBE, "nobody")
    assert (score, threshold) == (1000.0, 5.0)  # Exim: score >= threshold -> spam
    assert "GTUBE" in report and "Content analysis details" in report
    score, threshold, _ = exim_spam_condition(srv.port, PLAIN_HAM, "nobody")
    assert score < threshold
    time.sleep(0)  # the verdicts were recorded: feedback can name them later
    assert len(srv.service.store.verdicts.recent(limit=10)) == 2


def test_tell_over_the_rate_cap_is_a_tempfail(make_server: Callable[..., SpamdServer]) -> None:
    srv = make_server(feedback={"per_user_per_hour": 1})
    assert srv.port

    def tell(raw: bytes) -> bytes:
        headers = (("User", "gina@example.org"), ("Message-class", "spam"), ("Set", "local"))
        return request(srv.port or 0, spamc_request("TELL", raw, *headers))

    assert tell(PLAIN_HAM) == spamd401.TELL_LEARNED
    before = _tempfails("rate_limited")
    capped = tell(GTUBE)
    assert capped.startswith(b"SPAMD/1.0 75 Temporary failure: feedback rate cap reached")
    assert _tempfails("rate_limited") == before + 1
    statuses = sorted(r.status for r in srv.service.store.feedback.recent())
    assert statuses == ["personal", "rate_limited"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff\x10garbage\r\n\r\n",
        b"CHECK SPAMC/abc\r\n\r\n",
        b"CHECK\r\n\r\n",
        b"CHECK SPAMC/1.5\r\n" + b"X-Header: 1\r\n" * 300 + b"\r\n",
        b"TELL SPAMC/1.5\r\nUser: a@x.org\r\nSet: local\r\nRemove: local\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_garbage_gets_a_protocol_error_and_the_server_goes_on(
    make_server: Callable[..., SpamdServer], data: bytes
) -> None:
    srv = make_server()
    assert srv.port
    assert request(srv.port, data).startswith(b"SPAMD/1.0 76 Bad header line: ")
    assert request(srv.port, spamc_request("CHECK", GTUBE)) == spamd401.CHECK_GTUBE


def test_connections_over_the_limit_get_a_tempfail(
    make_server: Callable[..., SpamdServer],
) -> None:
    srv = make_server(max_connections=1, timeout=5.0)
    assert srv.port
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as held:
        held.sendall(b"CHECK SPAMC/1.5\r\n")  # a request still being sent holds the slot
        for _ in range(100):
            if srv.active == 1:
                break
            time.sleep(0.02)
        before = _tempfails("connections")
        busy = request(srv.port, spamc_request("CHECK", GTUBE))
        assert busy == b"SPAMD/1.0 75 Temporary failure: too many connections, try again later\r\n"
        assert _tempfails("connections") == before + 1
    for _ in range(250):  # the held connection ends (EOF during headers): its slot frees
        if srv.active == 0:
            break
        time.sleep(0.02)
    assert request(srv.port, spamc_request("CHECK", GTUBE)) == spamd401.CHECK_GTUBE
