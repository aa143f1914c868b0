"""Antivirus against a real clamd (custom EICAR signature), over unix and TCP sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from email.message import EmailMessage

import pytest

from mailsift.config import AntivirusSettings
from mailsift.smtpd.checks.antivirus import Antivirus, parse_reply
from mailsift.smtpd.checks.base import CheckAction, SmtpContext
from tests.fixtures.clamd import eicar, start_clamd


def mail_with(
    payload: bytes, filename: str, ctype: str = "application/octet-stream", cte: str | None = None
) -> bytes:  # type: ignore[no-untyped-def]
    msg = EmailMessage()
    msg["From"] = "a@good.test"
    msg["To"] = "b@mailsift.test"
    msg["Subject"] = "the file"
    msg.set_content("see attachment\n")
    maintype, subtype = ctype.split("/")
    extra: dict = {"cte": cte} if cte else {}
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename, **extra)
    return msg.as_bytes()


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


CLEAN = mail_with(b"just a harmless document\n" * 20, "notes.txt")


def check(address: str, **kw) -> Antivirus:  # type: ignore[no-untyped-def]
    return Antivirus(AntivirusSettings(clamd_socket=address, timeout=20.0, **kw))


async def scan(av: Antivirus, raw: bytes):  # type: ignore[no-untyped-def]
    return await av.run(SmtpContext("192.0.2.10", raw_message=raw))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(mail_with(eicar(), "eicar.com"), id="base64-attachment"),
        pytest.param(mail_with(eicar(), "eicar.txt", "text/plain", cte="7bit"), id="plain-7bit"),
        pytest.param(
            mail_with(zipped("eicar.com", eicar()), "docs.zip", "application/zip"), id="inside-zip"
        ),
        pytest.param(
            mail_with(
                zipped("inner.zip", zipped("eicar.com", eicar())), "outer.zip", "application/zip"
            ),
            id="zip-in-zip",
        ),
        pytest.param(eicar(), id="bare-file"),
    ],
)
async def test_eicar_rejected_with_554_naming_it(clamd_server, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    res = await scan(check(clamd_server.unix_address), raw)
    assert res.action is CheckAction.REJECT
    assert res.details["code"] == 554 and res.enhanced_code == "5.7.1"
    assert "Eicar-Test" in res.reason and "Eicar-Test" in res.details["virus"]
    assert [s.name for s in res.symbols] == ["AV_VIRUS"]


async def test_base64_attachment_is_really_base64(clamd_server) -> None:  # type: ignore[no-untyped-def]
    raw = mail_with(eicar(), "eicar.com")
    assert base64.b64encode(eicar())[:20] in raw and eicar() not in raw


async def test_clean_message_over_tcp(clamd_server) -> None:  # type: ignore[no-untyped-def]
    res = await scan(check(clamd_server.tcp_address), CLEAN)
    assert res.action is CheckAction.ACCEPT and res.result == "clean"
    assert [s.name for s in res.symbols] == ["AV_CLEAN"]


async def test_large_message_streams_in_chunks(clamd_server) -> None:  # type: ignore[no-untyped-def]
    av = check(clamd_server.unix_address)
    clean = mail_with(b"x" * 3_000_000, "big.bin")  # ~4 MB base64: many 64 KiB chunks
    assert (await scan(av, clean)).result == "clean"
    # the virus sits at the very end: found only if every chunk reached clamd
    tail = mail_with(b"x" * 3_000_000 + eicar(), "big.bin", "text/plain", cte="8bit")
    assert (await scan(av, tail)).result == "infected"


async def test_over_our_size_limit_is_never_an_unscanned_accept(clamd_server) -> None:  # type: ignore[no-untyped-def]
    res = await scan(check(clamd_server.unix_address, max_scan_bytes=1000), CLEAN * 2)
    assert res.action is CheckAction.REJECT
    assert res.details["code"] == 552 and res.enhanced_code == "5.3.4"


async def test_clamd_stream_limit_is_a_reject_not_an_accept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_clamd(tmp_path / "small", stream_max="1M")
    try:
        res = await scan(check(server.unix_address), mail_with(b"y" * 2_000_000, "big.bin"))
    finally:
        server.stop()
    assert res.action is CheckAction.REJECT and res.details["code"] == 552


async def test_clamd_stopped_tempfails(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_clamd(tmp_path / "own")
    av = check(server.unix_address)
    assert await av.client.ping()
    assert (await scan(av, CLEAN)).result == "clean"
    server.stop()
    down = await scan(av, mail_with(eicar(), "eicar.com"))
    assert down.action is CheckAction.TEMPFAIL
    assert down.enhanced_code == "4.7.1" and "try again later" in down.reason
    assert [s.name for s in down.symbols] == ["AV_TEMPERROR"]
    lenient = Antivirus(AntivirusSettings(clamd_socket=server.unix_address, on_error="accept"))
    assert (await scan(lenient, CLEAN)).action is CheckAction.ACCEPT


async def test_clamd_that_never_answers_times_out_to_tempfail() -> None:
    hung: list[asyncio.StreamWriter] = []

    async def accept_and_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)  # read nothing, answer nothing

    srv = await asyncio.start_server(accept_and_stall, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        av = Antivirus(AntivirusSettings(clamd_socket=f"tcp://127.0.0.1:{port}", timeout=0.5))
        res = await scan(av, CLEAN)
    finally:
        for w in hung:
            w.close()
        srv.close()
        await srv.wait_closed()
    assert res.action is CheckAction.TEMPFAIL and "timed out" in res.details["error"]


def test_parse_reply() -> None:
    assert parse_reply("stream: OK").infected is False
    found = parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND")
    assert found.infected and found.virus == "Win.Test.EICAR_HDB-1"
    with pytest.raises(Exception, match="clamd error"):
        parse_reply("INSTREAM: Can't allocate memory ERROR")
