"""Barring (Type 2 wildcard lists) and black/white lists (the real store, SQLite)."""

from __future__ import annotations

import pytest

from mailsift.config import BarringSettings, SmtpSettings
from mailsift.smtpd.checks.barring import RecipientBarring, SenderBarring
from mailsift.smtpd.checks.base import CheckAction, SmtpContext
from mailsift.smtpd.checks.greylist import Greylist
from mailsift.smtpd.checks.lists import ClientLists, RecipientLists, SenderLists
from mailsift.store.lists import StoreListPolicy
from mailsift.wildcard import WildcardList, compile_wildcard

# the checklist's example, verbatim
CHECKLIST = [
    "*@*%%%%*",
    "*@%%%%*",
    "*@*%%%%",
    "%%%%*@*",
    "*@netcom.com",
    "*@hotmail.com",
    "~myfriend@netcom.com",
    "~myfriend@hotmail.com",
    "spammer@spam.net",
]


@pytest.mark.parametrize(
    ("address", "barred"),
    [
        # four sequential digits in the domain part: anywhere, at the start, at the end
        ("joe@mail1234x.example", True),
        ("joe@1234mail.example", True),
        ("joe@mail.example1234", True),
        ("joe@mail123.example", False),  # only three
        ("joe@12a34.example", False),  # not sequential
        # addresses beginning with four digits
        ("1234joe@example.com", True),
        ("123joe@example.com", False),
        ("joe1234@example.com", False),  # digits in the local part, not at its start
        # netcom and hotmail, except myfriend
        ("anyone@netcom.com", True),
        ("Someone@HotMail.COM", True),
        ("myfriend@netcom.com", False),
        ("MyFriend@hotmail.com", False),
        ("myfriend2@hotmail.com", True),
        ("anyone@mail.netcom.com", False),  # a literal domain, not its subdomains
        # the one spammer
        ("spammer@spam.net", True),
        ("spammer2@spam.net", False),
        ("friend@spam.net", False),
        ("someone@example.org", False),
    ],
)
def test_checklist_barring_examples(address: str, barred: bool) -> None:
    assert WildcardList(CHECKLIST).matches(address) is barred


def test_wildcard_characters() -> None:
    assert compile_wildcard("?@x.test").fullmatch("a@x.test")
    assert not compile_wildcard("?@x.test").fullmatch("ab@x.test")
    assert compile_wildcard("$$@x.test").fullmatch("Ab@x.test")
    assert not compile_wildcard("$$@x.test").fullmatch("a1@x.test")
    assert not compile_wildcard("*@x.test").fullmatch("@x.test")  # * is one or more
    assert compile_wildcard("%%@x.test").fullmatch("42@x.test")
    assert not compile_wildcard("%%@x.test").fullmatch("4a@x.test")
    # ASCII-only case folding: the Kelvin sign is neither "k" nor a letter for $
    assert not compile_wildcard("$@x.test").fullmatch("\u212a@x.test")
    assert not compile_wildcard("kim@x.test").fullmatch("\u212aim@x.test")
    assert compile_wildcard("KIM@X.test").fullmatch("kim@x.TEST")


def test_wildcard_list_is_read_top_to_bottom() -> None:
    wl = WildcardList(["*@example.com", "~boss@example.com", "boss@example.com", "# comment", ""])
    assert wl.matches("boss@example.com")  # the last matching line decides
    assert len(wl) == 3
    wl2 = WildcardList(["~boss@example.com", "*@example.com"])
    assert wl2.matches("boss@example.com")


def test_wildcard_list_from_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "barred.txt"
    f.write_text("\n".join(CHECKLIST) + "\n", encoding="utf-8")
    assert WildcardList.from_file(str(f)).matches("spammer@spam.net")


def _smtp() -> SmtpSettings:
    return SmtpSettings(barred_message="Address barred, contact postmaster")


async def test_sender_barring_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = tmp_path / "more.txt"
    extra.write_text("*@bulk.example\n", encoding="utf-8")
    check = SenderBarring.from_settings(
        BarringSettings(sender=CHECKLIST, sender_file=extra), _smtp()
    )
    res = await check.run(SmtpContext("192.0.2.1", mail_from="anyone@netcom.com"))
    assert res.action is CheckAction.REJECT
    assert res.reason == "Address barred, contact postmaster" and res.enhanced_code == "5.7.1"
    assert [s.name for s in res.symbols] == ["BARRED_SENDER"]
    assert res.details["pattern"] == "*@netcom.com"
    assert (await check.run(SmtpContext("192.0.2.1", mail_from="x@bulk.example"))).action is (
        CheckAction.REJECT
    )
    friend = await check.run(SmtpContext("192.0.2.1", mail_from="<myfriend@netcom.com>"))
    assert friend.action is CheckAction.ACCEPT and friend.symbols == []
    bounce = await check.run(SmtpContext("192.0.2.1", mail_from=""))
    assert bounce.action is CheckAction.ACCEPT  # the null sender is never barred


@pytest.mark.parametrize(
    ("rcpt", "barred"),
    [
        ("remote!user@mailsift.test", True),
        ("remote!user", True),
        ('"user@remote.example"', True),
        ('"user@remote.example"@mailsift.test', True),
        ("bob@mailsift.test", False),
    ],
)
async def test_default_recipient_barring_blocks_relay_tricks(rcpt: str, barred: bool) -> None:
    check = RecipientBarring.from_settings(BarringSettings(), _smtp())
    res = await check.run(SmtpContext("192.0.2.1", current_rcpt=rcpt))
    assert (res.action is CheckAction.REJECT) is barred
    if barred:
        assert [s.name for s in res.symbols] == ["BARRED_RECIPIENT"]


# ---- black and white lists ---------------------------------------------------------------------


@pytest.fixture
def policy(sqlite_store) -> StoreListPolicy:  # type: ignore[no-untyped-def]
    p = StoreListPolicy(sqlite_store, ttl=0.0)
    p.add("block", "*@spam.test")
    p.add("block", "198.51.100.0/24")
    p.add("allow", "boss@spam.test")  # on both lists: white wins
    p.add("allow", "192.0.2.0/28")
    p.add("trusted", "news@letters.test", owner="bob@mailsift.test")
    p.add("untrusted", "*@pushy.test", owner="bob@mailsift.test")
    return p


async def test_global_lists_at_mail(policy) -> None:  # type: ignore[no-untyped-def]
    check = SenderLists(policy)
    blocked = await check.run(SmtpContext("203.0.113.9", mail_from="x@spam.test"))
    assert blocked.action is CheckAction.REJECT and blocked.enhanced_code == "5.7.1"
    assert [s.name for s in blocked.symbols] == ["BLACKLIST_SENDER"]
    both = await check.run(SmtpContext("203.0.113.9", mail_from="boss@spam.test"))
    assert both.action is CheckAction.WHITELIST
    assert [s.name for s in both.symbols] == ["WHITELIST_SENDER"]
    by_ip = await check.run(SmtpContext("198.51.100.77", mail_from="a@good.test"))
    assert by_ip.action is CheckAction.REJECT
    assert [s.name for s in by_ip.symbols] == ["BLACKLIST_IP"]
    # a white-listed sender wins over a black-listed IP
    white_from_black_ip = await check.run(SmtpContext("198.51.100.77", mail_from="boss@spam.test"))
    assert white_from_black_ip.action is CheckAction.WHITELIST
    nothing = await check.run(SmtpContext("203.0.113.9", mail_from="a@good.test"))
    assert nothing.action is CheckAction.ACCEPT and nothing.symbols == []


async def test_client_ip_white_list_at_connect(policy) -> None:  # type: ignore[no-untyped-def]
    check = ClientLists(policy)
    white = await check.run(SmtpContext("192.0.2.5"))
    assert white.action is CheckAction.WHITELIST
    assert [s.name for s in white.symbols] == ["WHITELIST_IP"]
    # a blocked IP is not refused before MAIL FROM (a white-listed sender may still win)
    assert (await check.run(SmtpContext("198.51.100.77"))).action is CheckAction.ACCEPT


async def test_per_user_lists_at_rcpt(policy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mailsift.config import GreylistSettings
    from mailsift.store.greylist import SqliteGreylistStore

    check = RecipientLists(policy)
    ctx = SmtpContext(
        "203.0.113.9", mail_from="news@letters.test", current_rcpt="bob@mailsift.test"
    )
    trusted = await check.run(ctx)
    assert trusted.action is CheckAction.ACCEPT
    assert [s.name for s in trusted.symbols] == ["USER_WHITELIST"]
    # ... and not greylisted for bob, but greylisted for carol
    grey = Greylist(GreylistSettings(), SqliteGreylistStore(tmp_path / "g.db"))
    assert [s.name for s in (await grey.run(ctx)).symbols] == ["GREYLIST_SKIPPED"]
    ctx.current_rcpt = "carol@mailsift.test"
    assert (await check.run(ctx)).symbols == []
    assert (await grey.run(ctx)).action is CheckAction.TEMPFAIL

    pushy = await check.run(
        SmtpContext("203.0.113.9", mail_from="sales@pushy.test", current_rcpt="bob@mailsift.test")
    )
    assert pushy.action is CheckAction.REJECT
    assert [s.name for s in pushy.symbols] == ["USER_BLACKLIST"]
    carol = await check.run(
        SmtpContext("203.0.113.9", mail_from="sales@pushy.test", current_rcpt="carol@mailsift.test")
    )
    assert carol.action is CheckAction.ACCEPT


async def test_store_down_is_a_tempfail(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    policy = StoreListPolicy(sqlite_store, ttl=0.0)
    sqlite_store.close()
    res = await SenderLists(policy).run(SmtpContext("203.0.113.9", mail_from="a@good.test"))
    assert res.action is CheckAction.TEMPFAIL
    assert [s.name for s in res.symbols] == ["LISTS_TEMPERROR"]
