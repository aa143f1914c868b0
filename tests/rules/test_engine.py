"""Engine semantics, each test run with Hyperscan and with Python re only (``engine``)."""

from __future__ import annotations

import re
from collections.abc import Callable

from mailsift.classifier.rules import RuleSet
from mailsift.message import parse

from .conftest import hits, make_message

Build = Callable[[str], RuleSet]


def test_header_plain_negated_and_case(engine: Build) -> None:
    rs = engine(
        """
        header SUBJ_FOO   Subject =~ /foo/
        header SUBJ_FOO_I Subject =~ /FOO/i
        header SUBJ_NOT   Subject !~ /zzz/
        header SUBJ_NOT2  Subject !~ /foo/
        header LOWER_NAME subject =~ /foo/
        """
    )
    got = hits(rs, make_message(subject="a foo b"))
    assert got == {"SUBJ_FOO", "SUBJ_FOO_I", "SUBJ_NOT", "LOWER_NAME"}


def test_header_modifiers_addr_name_raw(engine: Build) -> None:
    rs = engine(
        """
        header ADDR      From:addr =~ /^alice\\@example\\.org$/
        header ADDR_NOT  From:addr =~ /Alice/
        header NAME      From:name =~ /^Alice$/
        header TO_ADDR   To:addr =~ /^bob\\@example\\.net$/
        header RAW_ENC   Subject:raw =~ /=\\?utf-8\\?B\\?/i
        header DECODED   Subject =~ /^Grüße$/
        header RAW_NOT_DECODED Subject:raw =~ /Grüße/
        """
    )
    pm = make_message(subject="=?utf-8?B?R3LDvMOfZQ==?=")
    assert hits(rs, pm) == {"ADDR", "NAME", "TO_ADDR", "RAW_ENC", "DECODED"}


def test_header_all_exists_and_if_unset(engine: Build) -> None:
    rs = engine(
        """
        header ALL_HDRS   ALL =~ /^X-Marker: yes$/m
        header HAS_MARK   exists:X-Marker
        header HAS_NOPE   exists:X-Nope
        header UNSET_DEF  X-Nope =~ /^fallback$/ [if-unset: fallback]
        header UNSET_NEG  X-Nope !~ /something/
        header UNSET_EMPTY X-Nope =~ /^$/
        header UNSET_POS  X-Nope =~ /something/
        header SET_IGNORES_DEFAULT X-Marker =~ /^fallback$/ [if-unset: fallback]
        """
    )
    got = hits(rs, make_message(headers={"X-Marker": "yes"}))
    assert got == {"ALL_HDRS", "HAS_MARK", "UNSET_DEF", "UNSET_NEG", "UNSET_EMPTY"}


def test_pseudo_headers(engine: Build) -> None:
    rs = engine(
        """
        header TOCC       ToCc =~ /carol\\@example\\.com/
        header TOCC_ADDR  ToCc:addr =~ /^bob\\@example\\.net\\ncarol\\@example\\.com$/
        header MSGID      MESSAGEID =~ /^<orig\\@list>$/m
        header ENVFROM    EnvelopeFrom =~ /bounce\\@example\\.org/
        """
    )
    pm = make_message(
        headers={
            "Cc": "Carol <carol@example.com>",
            "X-Original-Message-ID": "<orig@list>",
            "Message-ID": "<resent@relay>",
            "Return-Path": "<bounce@example.org>",
        }
    )
    assert hits(rs, pm) == {"TOCC", "TOCC_ADDR", "MSGID", "ENVFROM"}


def test_multiple_header_instances_join_with_newlines(engine: Build) -> None:
    rs = engine(
        """
        header FIRST_ONLY Received =~ /^from a/
        header SECOND     Received =~ /^from b/m
        header NOT_START  Received =~ /^from b/
        header FIRST_MOD  Received:first =~ /^from a.*\\n?$/
        header LAST_MOD   Received:last =~ /^from b/
        """
    )
    raw = b"Received: from a\nReceived: from b\nSubject: x\n\nbody\n"
    assert hits(rs, parse(raw)) == {"FIRST_ONLY", "SECOND", "FIRST_MOD", "LAST_MOD"}


def test_body_is_rendered_subject_plus_paragraph_lines(engine: Build) -> None:
    rs = engine(
        """
        body SUBJECT_IN_BODY   /^Special offer$/
        body PARA_JOINED       /^first line second line$/
        body PARA_START        /^third paragraph/
        body NOT_ACROSS_PARAS  /second line third/
        rawbody RAW_LINES      /^second line$/m
        rawbody RAW_NO_SUBJECT /Special offer/
        full FULL_HEADER       /^Subject: Special offer/m
        """
    )
    text = "first line\nsecond line\n\n  third paragraph\n"
    got = hits(rs, make_message(text, subject="Special offer"))
    assert got == {"SUBJECT_IN_BODY", "PARA_JOINED", "PARA_START", "RAW_LINES", "FULL_HEADER"}


def test_body_renders_html_rawbody_keeps_tags(engine: Build) -> None:
    rs = engine(
        """
        body HTML_RENDERED     /bold words here/
        body NO_TAGS           /<b>/
        body NO_SCRIPT         /var secret/
        rawbody RAW_TAGS       /<b>bold/
        full FULL_RAW          m{<b>bold</b>}
        """
    )
    html = (
        "<html><head><script>var secret = 1;</script></head><body>"
        "<p>third paragraph <b>bold</b> words here</p></body></html>"
    )
    pm = make_message(html, content_type="text/html; charset=utf-8")
    assert hits(rs, pm) == {"HTML_RENDERED", "RAW_TAGS", "FULL_RAW"}


def test_full_sees_encoded_body_rawbody_sees_decoded(engine: Build) -> None:
    rs = engine(
        """
        full    FULL_B64    /^SGVsbG8gc2VjcmV0/m
        rawbody RAW_DECODED /Hello secret/
        body    BODY_DECODED /Hello secret/
        """
    )
    raw = (
        b"Subject: t\nMIME-Version: 1.0\nContent-Type: text/plain\n"
        b"Content-Transfer-Encoding: base64\n\nSGVsbG8gc2VjcmV0IHdvcmxk\n"
    )
    assert hits(rs, parse(raw)) == {"FULL_B64", "RAW_DECODED", "BODY_DECODED"}


def test_uri_rules_see_each_url(engine: Build) -> None:
    rs = engine(
        """
        uri EXAMPLE_COM  m{^https?://(?:www\\.)?example\\.com/}i
        uri BARE_WWW     m{^http://www\\.bare\\.org}
        uri HREF_ONLY    /hidden-target/
        uri NEVER        /nomatch-anywhere/
        uri ANCHORED     /^https:\\/\\/second\\.net\\/$/
        """
    )
    html = (
        '<p>see <a href="https://hidden-target.example/x">click</a> and https://Example.com/a '
        "www.bare.org and https://second.net/</p>"
    )
    pm = make_message(html, content_type="text/html")
    assert hits(rs, pm) == {"EXAMPLE_COM", "BARE_WWW", "HREF_ONLY", "ANCHORED"}


def test_regex_flags(engine: Build) -> None:
    rs = engine(
        r"""
        full FLAG_I   /HELLO/i
        full NO_I     /HELLO/
        full FLAG_M   /^second$/m
        full NO_M     /^second$/
        full FLAG_S   /first.second/s
        full NO_S     /first.second/
        full FLAG_X   / f i r s t   \# the rest is a comment in an extended regex /x
        full FLAG_X2  m{ fi  rst \s+ [a-z ]+ }x
        full X_CLASS_SPACE m{ hello[ ]first }x
        full INLINE_I /(?i)FIRST/
        full MID_I    /fi(?i)RST/
        """
    )
    pm = parse(b"Subject: s\n\nhello first\nsecond\n")
    assert hits(rs, pm) == {
        "FLAG_I",
        "FLAG_M",
        "FLAG_S",
        "FLAG_X",
        "FLAG_X2",
        "X_CLASS_SPACE",
        "INLINE_I",
        "MID_I",
    }


def test_perl_syntax_translations(engine: Build) -> None:
    rs = engine(
        r"""
        body END_Z        /end of text\z/
        body END_BIG_Z    /last line\Z/
        body QUOTED       /\Qa.b*c\E/
        body HEX_BRACE    /\x{41}BC/
        body POSIX        /[[:digit:]]{3}-[[:alpha:]]+/
        body NAMED        /(?<w>ab)\k<w>/
        body UNKNOWN_ESC  /\yes/
        body LOOKBEHIND   /(?<!not )good/
        body LOOKAHEAD    /foo(?!bar)/
        body BACKREF      /(\w)\1\1/
        body POSSESSIVE   /x++y/
        body UTF8_CHAR    /caf\x{e9}|café/
        body QUANT_COMMA  /z{,2}q/
        """
    )
    pm = make_message("a.b*c ABC 123-abc ababyes good fooqux aaa xxy café zzq\n\nlast line")
    got = hits(rs, pm)
    assert got == {
        "END_BIG_Z",
        "QUOTED",
        "HEX_BRACE",
        "POSIX",
        "NAMED",
        "UNKNOWN_ESC",
        "LOOKBEHIND",
        "LOOKAHEAD",
        "BACKREF",
        "POSSESSIVE",
        "UTF8_CHAR",
        "QUANT_COMMA",
    }


def test_meta_boolean_and_arithmetic(engine: Build) -> None:
    rs = engine(
        """
        body __A /alpha/
        body __B /beta/
        body __C /gamma/
        body __D /delta/
        meta AND      __A && __B
        meta OR       __C || __D
        meta NOT      !__D
        meta NOT_GRP  !(__A && __D)
        meta SUM      (__A + __B + __C + __D) >= 3
        meta SUM_LOW  (__A + __B + __C + __D) > 3
        meta ARITH    2 * __A - __B == 1
        meta LE       __A + __B <= 2 && __C < 2
        meta NEQ      __A != __D
        meta META2    AND && SUM && !SUM_LOW
        meta META3    META2 || NOPE_UNKNOWN
        meta GLOB     rules_matching(__?) >= 3
        meta DIV      (__A + __B) / 2 == 1
        meta PRECEDENCE __D || __A && __B
        """
    )
    got = hits(rs, make_message("alpha beta gamma"), subrules=False)
    assert got == {
        "AND",
        "OR",
        "NOT",
        "NOT_GRP",
        "SUM",
        "ARITH",
        "LE",
        "NEQ",
        "META2",
        "META3",
        "GLOB",
        "DIV",
        "PRECEDENCE",
    }


def test_meta_over_skipped_rules_is_false_and_cycles_are_skipped(engine: Build) -> None:
    rs = engine(
        """
        body  OK       /hello/
        body  BROKEN   /(unclosed/
        body  EVALED   eval:check_something_unknown()
        meta  USES_BROKEN  OK && BROKEN
        meta  USES_EVAL    OK && EVALED
        meta  NEG_BROKEN   OK && !BROKEN
        meta  LOOP_A   LOOP_B || OK
        meta  LOOP_B   LOOP_A
        meta  BAD_EXPR OK && (
        """
    )
    got = hits(rs, make_message("hello"))
    assert got == {"OK", "NEG_BROKEN"}
    skipped = dict(rs.skipped)
    assert skipped["BROKEN"].startswith("regex error")
    assert skipped["EVALED"] == "eval test not implemented: check_something_unknown"
    assert (
        skipped["LOOP_A"] == "meta dependency cycle" or skipped["LOOP_B"] == "meta dependency cycle"
    )
    assert skipped["BAD_EXPR"].startswith("bad meta expression")


def test_skip_reasons_never_crash(engine: Build) -> None:
    rs = engine(
        r"""
        body CODE      /(?{ print "hi" })x/
        body RECURSE   /(a(?R)?b)/
        body PROP      /\p{L}+/
        body BRESET    /(?|a|b)/
        body GOOD      /fine/
        header HOSTMOD From:host =~ /x/
        header RELAYS  X-Spam-Relays-Elsewhere =~ /x/
        mimeheader MIMEH Content-Type:addr =~ /x/
        uridnsbl URIBL zen.example.org. A
        body BIGCLASS  /[\x{100}-\x{200}]/
        """
    )
    skipped = dict(rs.skipped)
    assert skipped["CODE"] == "unsupported code block (?{"
    assert skipped["RECURSE"] == "unsupported recursion (?R"
    assert skipped["PROP"] == "unsupported unicode property \\p"
    assert skipped["BRESET"] == "unsupported branch reset (?|"
    assert skipped["HOSTMOD"] == "header modifier not supported: :host"
    assert skipped["RELAYS"] == "pseudo-header not available: X-Spam-Relays-Elsewhere"
    assert skipped["MIMEH"] == "mimeheader modifier not supported: :addr"
    assert skipped["URIBL"] == "unsupported rule type: uridnsbl"
    assert "code point above 0xFF" in skipped["BIGCLASS"]
    assert rs.names == ["GOOD"]
    assert hits(rs, make_message("fine")) == {"GOOD"}


def test_scores_describe_tflags_and_reporting(engine: Build) -> None:
    rs = engine(
        """
        body     SCORED   /hit/
        describe SCORED   A scored rule
        score    SCORED   2.5
        body     DEFAULT  /hit/
        body     NICE     /hit/
        tflags   NICE     nice
        body     DISABLED /hit/
        score    DISABLED 0
        body     __SUB    /hit/
        meta     USES_DISABLED DISABLED && __SUB
        body     MULTI    /hit/
        tflags   MULTI    multiple maxhits=2
        meta     MULTI_COUNT MULTI == 2
        """
    )
    pm = make_message("hit hit hit")
    symbols = {s.name: s for s in rs.evaluate(pm)}
    assert set(symbols) == {"SCORED", "DEFAULT", "NICE", "USES_DISABLED", "MULTI", "MULTI_COUNT"}
    assert symbols["SCORED"].score == 2.5 and symbols["SCORED"].description == "A scored rule"
    assert symbols["SCORED"].source == "rule"
    assert symbols["DEFAULT"].score == 1.0
    assert symbols["NICE"].score == -1.0
    with_sub = {s.name for s in rs.evaluate(pm, include_subrules=True)}
    assert "__SUB" in with_sub and "DISABLED" not in with_sub
    assert rs.stats().disabled == 1


MULTIPART = (
    b"From: a@example.org\r\nTo: b@example.net\r\nSubject: pics\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b'--XX\r\nContent-Type: image/gif;\r\n        name="abcdefghij.gif"\r\n'
    b"Content-Transfer-Encoding: base64\r\nContent-ID: <=?utf-8?q?caf=C3=A9?=>\r\n\r\n"
    b"R0lGODlhAQABAAAAACw=\r\n--XX--\r\n"
)


def test_mimeheader_rules_see_every_part(engine: Build) -> None:
    rs = engine(
        """
        mimeheader GIF_NAME   Content-Type =~ /\\bname="[a-z]{8,}\\.gif/
        mimeheader GIF_FOLDED Content-Type:raw =~ /^image\\/gif;\\s+name=/
        mimeheader TOP_MIXED  Content-Type =~ /^multipart\\/mixed/
        mimeheader B64        Content-Transfer-Encoding =~ /^base64$/
        mimeheader CID_UTF8   Content-ID =~ /café/
        mimeheader CID_RAW    Content-ID:raw =~ /=\\?utf-8\\?q\\?/
        mimeheader NO_ZIP     Content-Type !~ /zip/
        mimeheader NO_GIF     Content-Type !~ /gif/
        mimeheader UNSET      X-Part-Tag =~ /^none$/ [if-unset: none]
        mimeheader ABSENT     X-Part-Tag =~ /./
        """
    )
    got = hits(rs, parse(MULTIPART))
    assert got == {
        "GIF_NAME", "GIF_FOLDED", "TOP_MIXED", "B64", "CID_UTF8", "CID_RAW", "NO_ZIP", "UNSET"
    }  # fmt: skip
    plain = hits(rs, make_message("no parts"))
    assert plain == {"NO_ZIP", "NO_GIF", "UNSET"}  # the top level is a part too
    # the same values again: the remembered hits, the same as computed
    assert hits(rs, parse(MULTIPART)) == got
    assert hits(rs, make_message("no parts")) == plain


def test_prune_unused_keeps_what_reported_rules_need() -> None:
    text = """
        body     USED_SUB      /alpha/
        score    USED_SUB      0
        body     __SUB         /beta/
        meta     SCORED_META   USED_SUB && __SUB
        score    SCORED_META   2.0
        body     __ORPHAN      /gamma/
        body     ZERO          /delta/
        score    ZERO          0
        meta     ZERO_META     ZERO || __ORPHAN
        score    ZERO_META     0
        body     PLAIN         /alpha/
        """
    full = RuleSet.from_text(text)
    pruned = RuleSet(full._parsed, prune_unused=True)
    reasons = dict(pruned.skipped)
    for name in ("__ORPHAN", "ZERO", "ZERO_META"):
        assert reasons[name].startswith("unused"), name
    assert set(pruned.names) == {"USED_SUB", "__SUB", "SCORED_META", "PLAIN"}
    pm = make_message("alpha beta gamma delta")
    assert hits(pruned, pm, subrules=False) == {"SCORED_META", "PLAIN"}
    # the reported hits are the same with and without pruning
    assert hits(pruned, pm, subrules=False) == hits(full, pm, subrules=False)


def test_builtin_evals(engine: Build) -> None:
    rs = engine(
        """
        body HTML_ONLY  eval:mailsift_html_only()
        body MISMATCH   eval:mailsift_link_text_mismatch()
        uri  URL_IP     eval:mailsift_url_ip()
        uri  SHORT      eval:mailsift_url_shortener()
        header RT       eval:mailsift_replyto_mismatch()
        body EXE        eval:mailsift_attachment_ext('exe scr')
        body CAPS       eval:mailsift_body_caps(0.5, 10)
        """
    )
    html = (
        '<a href="http://evil.example/login">https://bank.example.com/</a>'
        '<a href="https://bank.example.com/x">bank.example.com</a>'
        '<a href="http://203.0.113.5/">here</a> <a href="https://bit.ly/abc">go</a>'
    )
    pm = make_message(html, content_type="text/html", headers={"Reply-To": "x@other.example"})
    assert hits(rs, pm) == {"HTML_ONLY", "MISMATCH", "URL_IP", "SHORT", "RT"}
    assert hits(rs, make_message("SHOUTING IN CAPITALS HERE")) == {"CAPS"}


def test_address_lists(engine: Build) -> None:
    """``enlist_addrlist`` globs with SpamAssassin's WLBLEval tests: the whole address,
    case-insensitive, lists resolved at load (defined after the rule too); a list nobody
    defines makes its rule a skipped one, with the reason."""
    rs = engine(
        """
        header __FROM_NTLD    eval:check_from_in_list('SUSP_NTLD')
        header __RT_NTLD      eval:check_replyto_in_list('susp_ntld')
        meta   FROM_NTLD      __FROM_NTLD
        meta   RT_NTLD        __RT_NTLD
        header FROM_BANK      eval:check_from_in_list('BANKS')
        header FROM_NOLIST    eval:check_from_in_list('NOBODY_DEFINES_IT')
        enlist_addrlist (SUSP_NTLD) *@*.top *@*.icu
        enlist_addrlist (BANKS) *@bank.example ?ob@bank2.example
        """
    )
    assert dict(rs.skipped)["FROM_NOLIST"] == "address list not defined: NOBODY_DEFINES_IT"

    def msg(frm: str, reply_to: str | None = None) -> set[str]:
        headers = {"Reply-To": reply_to} if reply_to else {}
        pm = parse(
            (
                f"From: {frm}\r\nTo: bob@example.net\r\nSubject: s\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + "\r\nHi\r\n"
            ).encode()
        )
        return {h for h in hits(rs, pm) if not h.startswith("__")}

    assert msg("Deals <offers@promo.shop.TOP>") == {"FROM_NTLD"}
    assert msg("x@top.example") == set()  # the glob is the whole address, not a substring
    assert msg("Bank <alerts@bank.example>") == {"FROM_BANK"}
    assert msg("rob@bank2.example") == {"FROM_BANK"} and msg("robb@bank2.example") == set()
    assert msg("a@example.org", reply_to="Reply <r@x.icu>") == {"RT_NTLD"}


SA_EVALS = """
    header PAST_03_06    eval:check_for_shifted_date('-6', '-3')
    header FUTURE_24_48  eval:check_for_shifted_date('24', '48')
    header PAST_96_XX    eval:check_for_shifted_date('undef', '-96')
    body   UPPER_75_100  eval:check_for_uppercase('75', '100')
    header SUBJ_CAPS     eval:subject_is_all_caps()
    header USER_IN_SUBJ  eval:check_for_to_in_subject('user')
    header TWO_SUBJECTS  eval:check_header_count_range('Subject','2','999')
    body   BLANK_80_90   eval:check_blank_line_ratio('80','90','4')
    header SUBJ_ILLEGAL  eval:check_illegal_chars('Subject','0.00','2')
    header ALL_ILLEGAL   eval:check_illegal_chars('ALL','0.010','2')
"""


def _sa_message(
    date: str, subject: bytes = b"hello there", body: bytes = b"hi\n", **extra: bytes
) -> bytes:
    head = [
        b"Received: from x by y; Mon, 02 Mar 2026 10:00:00 +0000",
        b"Received: from w by x; Mon, 02 Mar 2026 09:59:00 +0000",
        b"From: a@example.org",
        b"To: jsmith@example.net",
        b"Subject: " + subject,
        b"Date: " + date.encode(),
    ]
    head += [k.encode() + b": " + v for k, v in extra.items()]
    return b"\n".join(head) + b"\n\n" + body


def test_spamassassin_eval_tests(engine: Build) -> None:
    rs = engine(SA_EVALS)

    def got(raw: bytes) -> set[str]:
        return hits(rs, parse(raw))

    assert got(_sa_message("Mon, 02 Mar 2026 06:00:00 +0000")) == {"PAST_03_06"}
    assert got(_sa_message("Tue, 03 Mar 2026 20:00:00 +0000")) == {"FUTURE_24_48"}
    assert got(_sa_message("Mon, 02 Feb 2026 10:00:00 +0000")) == {"PAST_96_XX"}
    assert got(_sa_message("Mon, 02 Mar 2026 10:00:00 +0000")) == set()
    assert got(_sa_message("no date at all")) == set()
    ok = "Mon, 02 Mar 2026 10:00:00 +0000"
    shout = b"THIS IS A VERY LOUD OFFER FOR YOU AND YOUR FRIENDS TODAY ONLY\n" * 5
    assert got(_sa_message(ok, body=shout)) == {"UPPER_75_100"}
    cjk = {"Content-Type": b"text/plain; charset=iso-2022-jp"}
    assert got(_sa_message(ok, body=shout, **cjk)) == set()  # no lower case there: no test
    assert got(_sa_message(ok, subject=b"Re: BUY CHEAP WATCHES NOW")) == {"SUBJ_CAPS"}
    assert got(_sa_message(ok, subject=b"OK NOW")) == set()  # too short
    assert got(_sa_message(ok, subject=b"jsmith, your invoice")) == {"USER_IN_SUBJ"}
    assert got(_sa_message(ok, Subject=b"second subject")) == {"TWO_SUBJECTS"}
    airy = b"x\n" + b"\n" * 8 + b"y\n"
    assert got(_sa_message(ok, body=airy)) == {"BLANK_80_90"}
    assert got(_sa_message(ok, subject=b"cheap \xe9\xe8 stuff")) == {"SUBJ_ILLEGAL"}
    assert got(_sa_message(ok, **{"X-Note": b"\x01\x02\x03 bytes"})) == {"ALL_ILLEGAL"}


def test_spamassassin_mime_and_html_eval_tests(engine: Build) -> None:
    rs = engine(
        """
        body HTML_MESSAGE      eval:html_test('html')
        body HTML_EMBEDS       eval:html_test('embeds')
        body FORM_MAILTO       eval:html_test('form_action_mailto')
        body TAG_CENTER        eval:html_tag_exists('center')
        body TAG_HEAD          eval:html_tag_exists('head')
        body HTML_MOSTLY       eval:check_mime_multipart_ratio('0.00','0.01')
        rawbody B64_COUNT      eval:check_for_mime('mime_base64_count')
        rawbody B64_TEXT       eval:check_for_mime('mime_base64_encoded_text')
        rawbody QP_COUNT       eval:check_for_mime('mime_qp_count')
        body ATTACHMENT        eval:check_for_mime('mime_attachment')
        body BAD_ISO           eval:check_for_mime('mime_bad_iso_charset')
        rawbody QP_LONG        eval:check_for_mime('mime_qp_long_line')
        body FONT_BAD          eval:html_test('font_face_bad')
        """
    )
    skipped = dict(rs.skipped)
    assert skipped["FONT_BAD"] == "eval test not implemented: html_test('font_face_bad')"
    html = "<center><b>" + "Buy now! " * 40 + '</b><embed src="x.swf"></center>'
    html += '<form action="mailto:x@example.org"><input></form>'
    raw = (
        "From: a@example.org\r\nTo: b@example.net\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain; charset=iso-2099-zz\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nIA==\r\n"
        "--A\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        "\r\n" + html + "\r\n--A--\r\n"
    ).encode()
    # no B64_TEXT: the base64 text part's charset is not ASCII; QP_LONG: the HTML part's
    # one undecoded line is longer than 78 characters
    assert hits(rs, parse(raw)) == {
        "HTML_MESSAGE", "HTML_EMBEDS", "FORM_MAILTO", "TAG_CENTER", "HTML_MOSTLY",
        "B64_COUNT", "QP_COUNT", "BAD_ISO", "QP_LONG",
    }  # fmt: skip
    ascii64 = raw.replace(b"iso-2099-zz", b"us-ascii")
    assert {"B64_TEXT"} <= hits(rs, parse(ascii64))
    # parsers add <head>; only tags written in the source count
    assert "TAG_HEAD" not in hits(rs, parse(raw))
    plain = make_message("see the attached file")
    assert hits(rs, plain) == set()


def _alternative(plain: str, html: str) -> bytes:
    return (
        "From: a@example.org\r\nTo: b@example.net\r\nSubject: points\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        f"--A\r\nContent-Type: text/plain\r\n\r\n{plain}\r\n"
        f"--A\r\nContent-Type: text/html\r\n\r\n{html}\r\n--A--\r\n"
    ).encode()


def test_multipart_alternative_difference(engine: Build) -> None:
    """SpamAssassin's MIMEEval measures (stock MPART_ALT_DIFF and MPART_ALT_DIFF_COUNT):
    the HTML alternative's shown words missing from the plain one, and a plain alternative
    with more than three times the HTML's distinct words."""
    rs = engine(
        """
        body ALT_DIFF        eval:multipart_alternative_difference('99', '100')
        body ALT_DIFF_COUNT  eval:multipart_alternative_difference_count('3', '1')
        body ALT_SOME_DIFF   eval:multipart_alternative_difference('10', '50')
        """
    )
    offer = "Your points expire today. Convert them to a gift card."
    salad = " ".join(f"word{i}" for i in range(40))

    def got(raw: bytes) -> set[str]:
        return hits(rs, parse(raw))

    assert got(_alternative(offer, f"<p>{offer}</p>")) == set()  # same words
    # the plain part says something else entirely
    assert got(_alternative("Dear friend, see you on Sunday", f"<p>{offer}</p>")) == {"ALT_DIFF"}
    # the plain part hides a salad beside the offer: more words, none missing from it
    assert got(_alternative(f"{salad} {offer}", f"<p>{offer}</p>")) == {"ALT_DIFF_COUNT"}
    # hidden HTML is not what the reader sees: the shown words are the offer
    hidden = f'<p>{offer}</p><div style="display:none">{salad}</div>'
    assert got(_alternative(offer, hidden)) == set()
    # half the shown words missing from the plain part: a difference of 50%
    half = "one two three four"
    assert got(_alternative("one two", f"<p>{half}</p>")) == {"ALT_SOME_DIFF"}
    # an image-only HTML alternative counts one word the plain part lacks
    assert got(_alternative(offer, '<img src="cid:x">')) == {"ALT_DIFF"}
    # no multipart/alternative: neither test
    assert hits(rs, make_message(offer)) == set()


def test_max_scan_bytes_caps_body() -> None:
    text = "x" * 5000 + " needle"
    rs = RuleSet.from_text("body NEEDLE /needle/\n", max_scan_bytes=1000)
    assert hits(rs, make_message(text)) == set()
    rs = RuleSet.from_text("body NEEDLE /needle/\n", max_scan_bytes=100000)
    assert hits(rs, make_message(text)) == {"NEEDLE"}


def test_hostile_messages_do_not_break_evaluation(engine: Build) -> None:
    rs = engine("body A /x/\nheader B From:addr =~ /y/\nuri C /z/\nfull D /\\x00/\n")
    for raw in (
        b"",
        b"\x00\xff\xfe",
        b"Subject: =?bogus?Q?=ZZ?=\n\n\xff" * 3,
        b"From: <<<@@@>>>\n\n",
    ):
        rs.evaluate(parse(raw))


def test_confirmation_starts_where_hyperscan_first_reports(engine: Build) -> None:
    # look-arounds make these prefilter rules: hyperscan's superset reports the first bare
    # "foo"; re confirms from there minus the pattern's reach (look-behind included), and
    # must still find a true match that lies later, count every match, and miss none
    rs = engine(
        r"""
        body     LATE     /(?<=x)foo(?!bar)/
        body     __COUNT  /(?<=x)fo(?=o)/
        tflags   __COUNT  multiple maxhits=5
        meta     COUNT_IS_3  __COUNT == 3
        body     WIDE     /\bfoo\s+baz\b/
        """
    )
    pm = make_message("foo " * 50 + "foobar yfoo xfoobar xfoo xfoo end foo baz")
    got = hits(rs, pm)
    assert {"LATE", "COUNT_IS_3", "WIDE"} <= got
    assert hits(rs, make_message("foobar foo xfoobar yfoo")) & {"LATE", "COUNT_IS_3"} == set()
    if rs.use_hyperscan:
        assert rs.regex_mode("LATE") == "prefilter" and rs.regex_mode("WIDE") == "hs"


def test_reach_bounds_match_length_with_lookarounds() -> None:
    from mailsift.classifier.rules.targets import reach

    assert reach(re.compile(rb"e")) == 1
    assert reach(re.compile(rb"(?<=ab)c|d{2,5}")) == 7  # 5 consumed + 2 looked behind
    assert reach(re.compile(rb"(?!credit)c[r4]e{1,3}(?=xy)")) == 13
    assert reach(re.compile(rb"a.*b")) == -1  # unbounded: confirm from the start
    assert reach(re.compile(rb"x{1,100000}")) == -1  # beyond MAX_REACH


def test_htmleval_tests_read_what_spamassassins_parser_records(engine: Build) -> None:
    """HTMLEval's comment / title / link-text matches, title against Subject length, the
    source's length and a tag left open, with the stock rules' arguments."""
    rs = engine(
        """
        body LINK_IMAGE      eval:html_text_match('anchor', '<img>')
        body COMMENT         eval:html_text_match('comment', '<!.*?>')
        body SAVED_URL       eval:html_text_match('comment', '<!-- saved from url=\\(\\d{4}\\)')
        body TITLE_120       eval:html_text_match('title', '.{120}')
        body TITLE_SUBJ      eval:html_title_subject_ratio('3.5')
        body LEN_0_1024      eval:html_range('length', '0', '1024')
        body LEN_OVER_1024   eval:html_range('length', '1024', 'inf')
        body LEN_UNDER_384   eval:html_eval('length', '< 384')
        body HEAD_OPEN       eval:html_tag_balance('head', '!= 0')
        body CENTER_OPEN     eval:html_tag_balance('center', '!= 0')
        """
    )

    def got(html: str, subject: str = "Your order") -> set[str]:
        return hits(rs, make_message(html, subject=subject, content_type="text/html"))

    short = (
        '<html><head></head><body><a href="http://x.example/"><img src="a.png"></a></body></html>'
    )
    assert got(short) == {"LINK_IMAGE", "LEN_0_1024", "LEN_UNDER_384"}
    # text in a link is no image; a comment with its markers; the length is the source's
    assert got('<p><a href="http://x.example/">click</a></p><!-- x -->' + " " * 400) == {
        "COMMENT",
        "LEN_0_1024",
    }
    assert got("<!-- saved from url=(0022)http://x.example/ --><p>" + "y" * 1100 + "</p>") == {
        "COMMENT",
        "SAVED_URL",
        "LEN_OVER_1024",
    }
    # a title more than 3.5 times as long as the Subject; entities decoded, tags inside
    # script are no tags
    title = "<title>" + "A &amp; B " * 21 + "</title>"  # 126 characters decoded
    script = '<script>document.write(\'<a href="http://y.example/"><img src="p"></a>\')</script>'
    assert got(f"<html><head>{title}{script}</head><p>hi</p></html>", subject="Sale") == {
        "TITLE_120",
        "TITLE_SUBJ",
        "LEN_0_1024",
        "LEN_UNDER_384",
    }
    # a head or center never closed; one closed too often counts 0, not below
    assert got("<html><head><title>x</title><body><center>hi</body></html>") >= {
        "HEAD_OPEN",
        "CENTER_OPEN",
    }
    assert "HEAD_OPEN" not in got("<html><head></head></head><body>hi</body></html>")
    # no HTML: none of them
    assert hits(rs, make_message("<a href=x><img></a> plain text")) == set()


def test_htmleval_measures_not_computed_are_skipped_with_a_reason() -> None:
    rs = RuleSet.from_text(
        "body OBF eval:html_range('obfuscation_ratio', '.2', '.3')\n"
        "body BAD_EXPR eval:html_eval('length', 'lt 5')\n"
        "body OK eval:html_range('length', '0', '10')\n"
    )
    skipped = dict(rs.skipped)
    assert "obfuscation_ratio" in skipped["OBF"] and "lt 5" in skipped["BAD_EXPR"]
    assert "OK" in rs.names


def test_uri_host_lists(engine: Build) -> None:
    """WLBLEval's check_uri_host_listed over ``enlist_uri_host`` lists: a host or a parent
    domain listed, the nearest entry deciding ("!" excepts a subdomain), mailto: not a
    link, ``delist_uri_host`` taking entries back, an undefined list a load error."""
    rs = engine(
        """
        enlist_uri_host (BAD_TLD) top xyz !ok.top
        enlist_uri_host (SHORT) bit.example
        delist_uri_host (BAD_TLD) xyz
        body BAD_TLD   eval:check_uri_host_listed('BAD_TLD')
        body SHORT     eval:check_uri_host_listed('SHORT')
        body NO_LIST   eval:check_uri_host_listed('NEVER_DEFINED')
        """
    )
    assert "NO_LIST" in dict(rs.skipped)

    def got(body: str) -> set[str]:
        return hits(rs, make_message(body))

    assert got("see https://deals.shop.top/x") == {"BAD_TLD"}
    assert got("see https://www.ok.top/x") == set()  # excepted, nearest entry wins
    assert got("see https://a.b.bit.example/y") == {"SHORT"}
    assert got("see https://bit.example.org/y") == set()  # only a parent domain counts
    assert got("see https://site.xyz/") == set()  # delisted
    assert got("write to mailto:someone@deals.top") == set()
