"""The .cf parser: directives, conditionals, ReplaceTags, overrides."""

from __future__ import annotations

from mailsift.classifier.rules.parser import SA_VERSION, expand_tags, parse_string


def test_directives_and_metadata() -> None:
    p = parse_string(
        """
        # a comment
        header   H1  Subject =~ /foo/i   # trailing comment
        describe H1  Subject has foo
        score    H1  2.5
        score    H2  1.0 2.0 3.0 4.0
        tflags   H2  multiple maxhits=3 nice
        body     H2  /bar/
        rawbody  R1  m{<b>}
        full     F1  m!^Received:!m
        uri      U1  m,^https?://,
        meta     M1  H1 && !H2
        lang de describe H1 Betreff hat foo
        priority H1 -100
        unknown_directive whatever
        """
    )
    assert set(p.rules) == {"H1", "H2", "R1", "F1", "U1", "M1"}
    h1 = p.rules["H1"]
    assert (h1.kind, h1.header, h1.pattern, h1.flags, h1.negate) == (
        "header",
        "Subject",
        "foo",
        "i",
        False,
    )
    assert p.describe["H1"] == "Subject has foo"  # the lang line did not override it
    assert p.scores == {"H1": 2.5, "H2": 1.0}  # four-score form: the first (score set 0)
    assert p.tflags["H2"] == ("multiple", "maxhits=3", "nice")
    assert p.rules["R1"].pattern == "<b>"
    assert (p.rules["F1"].pattern, p.rules["F1"].flags) == ("^Received:", "m")
    assert p.rules["U1"].pattern == "^https?://"
    assert p.rules["M1"].expr == "H1 && !H2"


def test_header_forms() -> None:
    p = parse_string(
        """
        header A From:addr =~ /\\@example\\.com$/i
        header B From:name:raw !~ /x/
        header C exists:X-Mailer
        header D X-Foo =~ /^$/ [if-unset: missing]
        header E ALL =~ /^X-Bar: /m
        header F From:host =~ /x/
        header G eval:check_for_missing_to_header()
        header H rbleval:check_rbl('x', 'y')
        """
    )
    r = p.rules
    assert (r["A"].header, r["A"].modifiers) == ("From", ("addr",))
    assert (r["B"].modifiers, r["B"].negate) == (("name", "raw"), True)
    assert r["C"].exists and r["C"].header == "X-Mailer"
    assert r["D"].if_unset == "missing" and r["D"].pattern == "^$"
    assert r["E"].header == "ALL"
    assert r["F"].error == "header modifier not supported: :host"
    assert (r["G"].eval_name, r["G"].eval_args) == ("check_for_missing_to_header", "")
    assert r["H"].error is not None


def test_mimeheader_forms() -> None:
    p = parse_string(
        """
        ifplugin Mail::SpamAssassin::Plugin::MIMEHeader
        mimeheader GIF   Content-Type =~ /\\bname="[a-z]{8,}\\.gif/
        mimeheader RAWCT Content-Type:raw !~ /^text/ [if-unset: text/plain]
        mimeheader ADDR  Content-Type:addr =~ /x/
        endif
        """
    )
    r = p.rules
    assert (r["GIF"].kind, r["GIF"].header, r["GIF"].negate) == (
        "mimeheader",
        "Content-Type",
        False,
    )
    assert (r["RAWCT"].modifiers, r["RAWCT"].negate) == (("raw",), True)
    assert r["RAWCT"].if_unset == "text/plain"
    assert r["ADDR"].error == "mimeheader modifier not supported: :addr"
    assert not p.inactive


def test_escaped_hash_and_bad_regex_definitions() -> None:
    p = parse_string("body A /a\\#b/\nbody B /unterminated\nbody C /x/q\n")
    assert p.rules["A"].pattern == "a#b"
    assert p.rules["B"].error == "unterminated regex"
    assert "unknown regex flags" in (p.rules["C"].error or "")


def test_later_definition_wins() -> None:
    p = parse_string("body X /first/\nscore X 1\nheader X Subject =~ /second/\nscore X 3\n")
    assert p.rules["X"].kind == "header" and p.rules["X"].pattern == "second"
    assert p.scores["X"] == 3


def test_conditionals() -> None:
    p = parse_string(
        """
        ifplugin Mail::SpamAssassin::Plugin::ReplaceTags
          body IN_AVAILABLE /a/
        endif
        ifplugin Mail::SpamAssassin::Plugin::DCC
          body IN_MISSING /b/
          if (version >= 3.004000)
            body NESTED /c/
          endif
        endif
        if !plugin(Mail::SpamAssassin::Plugin::DCC)
          body NOT_PLUGIN /d/
        endif
        if (version >= 5.000000)
          body FUTURE /e/
        else
          body PRESENT /f/
        endif
        if can(Mail::SpamAssassin::Conf::feature_bug6558_free)
          body CAN_FEATURE /g/
        endif
        if can(Mail::SpamAssassin::Plugin::MIMEEval::has_check_abundant_unicode_ratio)
          body CAN_UNKNOWN /h/
        endif
        if can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)
          body CAN_IMPLEMENTED /i/
        endif
        """
    )
    assert {"IN_AVAILABLE", "NOT_PLUGIN", "PRESENT", "CAN_FEATURE", "CAN_IMPLEMENTED"} <= set(
        p.rules
    )
    for hidden in ("IN_MISSING", "NESTED", "FUTURE", "CAN_UNKNOWN"):
        assert hidden not in p.rules
        assert p.inactive[hidden].startswith("inside inactive block")
    assert "DCC" in p.inactive["IN_MISSING"]
    assert SA_VERSION >= 4


def test_rule_hidden_in_one_branch_but_defined_in_another_is_not_inactive() -> None:
    p = parse_string(
        """
        ifplugin Mail::SpamAssassin::Plugin::Nope
          body X /a/
        endif
        body X /b/
        """
    )
    assert "X" in p.rules and "X" not in p.inactive


def test_replace_tags() -> None:
    p = parse_string(
        """
        replace_tag   V  (?:v|\\\\/)
        replace_tag   I  [i1!|]
        replace_tag   A  [a4@]
        replace_inter W1 \\W?
        replace_post  P2 {1,2}
        body   FUZZY /<inter W1><post P2>(?!via)<V><I><A>/i
        replace_rules FUZZY
        body   UNTOUCHED /<V>/
        """
    )
    assert p.rules["FUZZY"].pattern == "(?!via)(?:v|\\\\/){1,2}\\W?[i1!|]{1,2}\\W?[a4@]{1,2}"
    assert p.rules["UNTOUCHED"].pattern == "<V>"


def test_expand_tags_nested() -> None:
    p = parse_string("replace_tag A x<B>\nreplace_tag B y\n")
    assert expand_tags("<A>", p) == "xy"
