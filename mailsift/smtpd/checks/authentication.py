"""Sender authentication: SPF, DKIM, ARC and DMARC.

- ``SpfCheck`` (MAIL): SPF (RFC 7208) with pyspf for the MAIL FROM identity and for the HELO
  identity. pyspf resolves through its module-level ``spf.DNSLookup``; we replace it once with
  a dispatcher that, inside our worker thread, sends each question to the session's
  :class:`~mailsift.smtpd.checks.dns.SessionDns` (the configured resolver and port, the session
  budget) and falls back to pyspf's own lookup for any other caller. pyspf is synchronous, so
  it runs in a thread. ``reject_spf_fail`` rejects an SPF fail (``550 5.7.23``, RFC 7372).
- ``DkimCheck`` (DATA): every DKIM-Signature (RFC 6376, at most 5) and the ARC chain
  (RFC 8617) with dkimpy, whose ``dnsfunc`` hook receives our resolver; a key lookup that
  times out is ``temperror``, a missing key ``permerror``.
- ``DmarcCheck`` (DATA): DMARC (RFC 7489) is evaluated here rather than with authheaders,
  whose ``dnsfunc`` contract (a string or a dnspython answer) and ``np=`` branch do not fit an
  async resolver: policy discovery at ``_dmarc.<From domain>`` then the organizational domain
  (public suffix list), ``sp=`` for subdomains, ``np=`` (RFC 9091) for subdomains that do not
  exist (NXDOMAIN or no data for A, AAAA and MX; a lookup that fails counts as existing),
  ``pct=`` applied deterministically (hash of the
  message), strict/relaxed alignment of the SPF-passed domain and of DKIM-passed ``d=``.
  ``p=reject`` failures are rejected (``550 5.7.1``) when ``settings.auth.reject_dmarc_reject``.

Results go to ``CheckResult.auth_results`` as RFC 8601 ``Authentication-Results`` clauses; the
SMTP filter stamps the header. Authenticated users and relay networks are not checked (the
checks declare ``skip_authenticated`` and ``skip_relay_clients``).

Symbols: ``SPF_{PASS,FAIL,SOFTFAIL,NEUTRAL,NONE,PERMERROR,TEMPERROR}``, ``SPF_HELO_*`` (same
words), ``DKIM_{PASS,FAIL,NONE,TEMPERROR,PERMERROR}``, ``ARC_{PASS,FAIL,NONE,TEMPERROR}``,
``DMARC_{PASS,FAIL_REJECT,FAIL_QUARANTINE,FAIL_NONE,NONE,TEMPERROR,PERMERROR}``.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dkim
import dns.asyncresolver
import spf

from mailsift.config import (
    AuthChecksSettings,
    DnsSettings,
    MessageSettings,
    Settings,
    SmtpSettings,
)
from mailsift.message import registrable_domain
from mailsift.smtpd.checks.base import CheckAction, CheckResult, SmtpContext, Stage
from mailsift.smtpd.checks.context import ar_comment, ar_value, domain_of, parsed_message
from mailsift.smtpd.checks.dns import NODATA, NXDOMAIN, DnsCheck, SessionDns, parse_ip
from mailsift.smtpd.checks.rdns import HOSTNAME_RE
from mailsift.smtpd.checks.registry import CheckEnv, register_check
from mailsift.smtpd.checks.scores import symbol, table_symbols

SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
MAX_DKIM_SIGNATURES = 5


# ---- SPF -------------------------------------------------------------------------------------

_spf_local = threading.local()
_spf_original_lookup = spf.DNSLookup
_install_lock = threading.Lock()


def _spf_dns_lookup(name: str, qtype: str, strict: Any = True, timeout: float = 30) -> list[Any]:
    """pyspf's DNSLookup contract, answered by the session resolver of the current thread."""
    sd: SessionDns | None = getattr(_spf_local, "dns", None)
    if sd is None:
        return list(_spf_original_lookup(name, qtype, strict, timeout))
    lk = sd.sync_lookup(str(name).rstrip("."), qtype)
    if lk.failed:
        raise spf.TempError(f"DNS {lk.status} for {name}/{qtype}: {lk.error}")
    out: list[Any] = []
    for rec in lk.records:
        if qtype == "MX":
            pref, _, host = rec.partition(" ")
            out.append(((name, qtype), (int(pref), host)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), [rec.encode("utf-8")]))
        else:
            out.append(((name, qtype), rec))
    return out


def install_spf_resolver() -> None:
    """Route pyspf's DNS through our sessions (idempotent; other callers are unaffected)."""
    with _install_lock:
        if spf.DNSLookup is not _spf_dns_lookup:
            spf.DNSLookup = _spf_dns_lookup


def spf_check_sync(sd: SessionDns, ip: str, sender: str, helo: str, receiver: str) -> str:
    """One pyspf evaluation in the calling (worker) thread; the result word."""
    _spf_local.dns = sd
    try:
        q = spf.query(i=ip, s=sender, h=helo, receiver=receiver, timeout=sd.timeout)
        result, _code, _expl = q.check()
    except Exception:  # pyspf raising is a temporary failure of ours, not the sender's
        result = "temperror"
    finally:
        _spf_local.dns = None
    word = str(result).lower()
    return word if word in SPF_RESULTS else "temperror"


def _auth(settings: Settings) -> AuthChecksSettings:
    return settings.check_block(AuthChecksSettings)


class _AuthCheck(DnsCheck[AuthChecksSettings]):
    """The skip flags the SPF, DKIM/ARC and DMARC checks share."""

    skip_whitelisted: ClassVar[bool] = False  # results still go to Authentication-Results
    skip_authenticated: ClassVar[bool] = True
    skip_relay_clients: ClassVar[bool] = True


def _build_spf(env: CheckEnv) -> SpfCheck:
    s = env.settings
    return SpfCheck(env.block(AuthChecksSettings), s.smtp, s.dns, env.resolver)


@register_check(
    block="auth",
    settings=AuthChecksSettings,
    enabled=lambda settings: _auth(settings).spf,
    build=_build_spf,
    symbols=table_symbols("SPF_"),
)
class SpfCheck(_AuthCheck):
    name: ClassVar[str] = "spf"
    stage: ClassVar[Stage] = Stage.MAIL

    def __init__(
        self,
        settings: AuthChecksSettings,
        smtp: SmtpSettings,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
    ) -> None:
        super().__init__(settings, dns_settings, resolver)
        self.receiver = smtp.hostname
        install_spf_resolver()

    async def run(self, ctx: SmtpContext) -> CheckResult:
        sd = self.session_dns(ctx)
        sd.bind()
        sender = (ctx.mail_from or "").strip().strip("<>")
        helo = (ctx.helo or "").strip().rstrip(".")
        # RFC 7208 2.3: the HELO identity is checked only when it is a domain name
        helo_ok = "." in helo and bool(HOSTNAME_RE.fullmatch(helo)) and parse_ip(helo) is None
        jobs: dict[str, Any] = {}
        if sender and "@" in sender:
            jobs["mailfrom"] = asyncio.to_thread(
                spf_check_sync, sd, ctx.client_ip, sender, helo, self.receiver
            )
        if helo_ok:
            jobs["helo"] = asyncio.to_thread(
                spf_check_sync, sd, ctx.client_ip, "", helo, self.receiver
            )
        words = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        return self._result(ctx, sender, helo, words)

    def _result(
        self, ctx: SmtpContext, sender: str, helo: str, words: dict[str, str]
    ) -> CheckResult:
        res = CheckResult(self.name, result="none")
        if "mailfrom" in words:
            w = words["mailfrom"]
            res.symbols.append(symbol(f"SPF_{w.upper()}", f"SPF {w} for {sender}"))
            res.auth_results.append(f"spf={w} smtp.mailfrom={ar_value(sender)}")
            res.result = w
        if "helo" in words:
            w = words["helo"]
            res.symbols.append(symbol(f"SPF_HELO_{w.upper()}", f"SPF {w} for HELO {helo}"))
            res.auth_results.append(f"spf={w} smtp.helo={ar_value(helo)}")
            if "mailfrom" not in words:
                res.result = w  # null sender: the HELO identity is the SPF result (RFC 7208 2.4)
        # the domain DMARC aligns with: MAIL FROM's, or HELO's for the null sender (RFC 7489 3.1.2)
        if "mailfrom" in words:
            res.details = {"domain": domain_of(sender), "result": words["mailfrom"]}
        elif "helo" in words:
            res.details = {"domain": helo.lower(), "result": words["helo"]}
        res.details["helo_result"] = words.get("helo", "none")
        if (
            res.result == "fail"
            and "mailfrom" in words
            and self.settings.reject_spf_fail
            and not ctx.whitelisted
        ):
            res.action = CheckAction.REJECT
            res.enhanced_code = "5.7.23"
            res.reason = f"SPF check failed: {ctx.client_ip} may not send mail for {sender}"
        return res


# ---- DKIM and ARC -----------------------------------------------------------------------------


@dataclass(slots=True)
class SignatureResult:
    result: str  # pass, fail, temperror, permerror
    domain: str = ""
    selector: str = ""
    b: str = ""
    error: str = ""


@dataclass(slots=True)
class _DnsState:
    temporary: bool = False
    missing: bool = False
    names: list[str] = field(default_factory=list)


def _make_dnsfunc(sd: SessionDns, state: _DnsState) -> Any:
    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        n = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        lk = sd.sync_lookup(n.rstrip("."), "TXT")
        state.names.append(n)
        if lk.failed:
            state.temporary = True
            raise dkim.DnsTimeoutError(f"{lk.status}: {lk.error}")
        if not lk.records:
            state.missing = True
            return None
        return lk.records[0].encode("utf-8")

    return dnsfunc


def _sig_tag(fields: dict[bytes, bytes] | None, tag: bytes) -> str:
    if not fields or tag not in fields:
        return ""
    return fields[tag].decode("ascii", "replace")


def verify_dkim_sync(sd: SessionDns, raw: bytes, minkey: int) -> list[SignatureResult]:
    try:
        d = dkim.DKIM(raw, minkey=minkey, timeout=int(max(1, sd.timeout)))
    except Exception as exc:
        return [SignatureResult("permerror", error=f"unparseable message: {exc}"[:200])]
    count = sum(1 for k, _v in d.headers if k.lower() == b"dkim-signature")
    out: list[SignatureResult] = []
    for idx in range(min(count, MAX_DKIM_SIGNATURES)):
        state = _DnsState()
        d.signature_fields = {}
        try:
            ok = d.verify(idx=idx, dnsfunc=_make_dnsfunc(sd, state))
            err = ""
        except dkim.DKIMException as exc:
            ok, err = False, str(exc)[:200]
        fields = d.signature_fields
        sr = SignatureResult(
            "pass" if ok else "fail",
            _sig_tag(fields, b"d").lower(),
            _sig_tag(fields, b"s"),
            "".join(_sig_tag(fields, b"b").split())[:8],
            err,
        )
        if not ok:
            if state.temporary:
                sr.result = "temperror"
            elif state.missing or (err and not err.startswith("body hash mismatch")):
                sr.result = "permerror"  # no key, bad tags, weak key: not a forgery signal
        out.append(sr)
    return out


def verify_arc_sync(sd: SessionDns, raw: bytes, minkey: int) -> tuple[str, str]:
    state = _DnsState()
    try:
        cv, _results, reason = dkim.arc_verify(raw, dnsfunc=_make_dnsfunc(sd, state), minkey=minkey)
    except Exception as exc:
        return "fail", f"{type(exc).__name__}: {exc}"[:200]
    word = cv.decode() if isinstance(cv, bytes) else str(cv)
    if word == "fail" and state.temporary:
        return "temperror", str(reason)
    return word.lower(), str(reason or "")


@register_check(
    block="auth",
    settings=AuthChecksSettings,
    enabled=lambda settings: _auth(settings).dkim or _auth(settings).arc,
    build=lambda env: DkimCheck(env.block(AuthChecksSettings), env.settings.dns, env.resolver),
    symbols=table_symbols("DKIM_", "ARC_"),
)
class DkimCheck(_AuthCheck):
    name: ClassVar[str] = "dkim"
    stage: ClassVar[Stage] = Stage.DATA

    async def run(self, ctx: SmtpContext) -> CheckResult:
        if ctx.raw_message is None:
            return CheckResult(self.name, result="none")
        sd = self.session_dns(ctx)
        sd.bind()
        raw = ctx.raw_message
        minkey = self.settings.dkim_min_key_bits
        arc: tuple[str, str] | None = None
        if self.settings.dkim and self.settings.arc:
            sigs, arc = await asyncio.gather(
                asyncio.to_thread(verify_dkim_sync, sd, raw, minkey),
                asyncio.to_thread(verify_arc_sync, sd, raw, minkey),
            )
        elif self.settings.dkim:
            sigs = await asyncio.to_thread(verify_dkim_sync, sd, raw, minkey)
        else:
            arc = await asyncio.to_thread(verify_arc_sync, sd, raw, minkey)
        res = self._dkim_result(sigs) if self.settings.dkim else CheckResult(self.name)
        if arc is not None:
            word, reason = arc
            res.symbols.append(symbol(f"ARC_{word.upper()}", reason[:200]))
            comment = f" ({ar_comment(reason)})" if ar_comment(reason) and word != "none" else ""
            res.auth_results.append(f"arc={word}{comment}")
            res.details["arc"] = word
        return res

    def _dkim_result(self, sigs: list[SignatureResult]) -> CheckResult:
        res = CheckResult(self.name)
        if not sigs:
            res.result = "none"
            res.symbols.append(symbol("DKIM_NONE"))
            res.auth_results.append("dkim=none")
            res.details = {"pass_domains": [], "signatures": []}
            return res
        seen: set[str] = set()
        for s in sigs:
            clause = f"dkim={s.result}"
            if s.domain:
                clause += f" header.d={ar_value(s.domain)}"
            if s.selector:
                clause += f" header.s={ar_value(s.selector)}"
            if s.b:
                clause += f" header.b={ar_value(s.b)}"
            res.auth_results.append(clause)
            name = f"DKIM_{s.result.upper()}"
            if name not in seen:
                seen.add(name)
                res.symbols.append(symbol(name, f"{s.domain or '?'}: {s.error or s.result}"))
        order = ("pass", "fail", "permerror", "temperror")
        res.result = next(w for w in order if any(s.result == w for s in sigs))
        res.details = {
            "pass_domains": sorted({s.domain for s in sigs if s.result == "pass"}),
            "signatures": [(s.domain, s.selector, s.result) for s in sigs],
        }
        return res


# ---- DMARC ------------------------------------------------------------------------------------


@dataclass(slots=True)
class DmarcRecord:
    tags: dict[str, str]
    domain: str  # where it was found
    from_org: bool  # found at the organizational domain, not the From domain
    nonexistent: bool = False  # the From domain does not exist (RFC 9091)

    @property
    def policy(self) -> str:
        p = self.tags.get("p", "none")
        if self.from_org and "sp" in self.tags:
            p = self.tags["sp"]
        if self.from_org and self.nonexistent and "np" in self.tags:
            p = self.tags["np"]
        return p if p in ("none", "quarantine", "reject") else "none"


def parse_dmarc(txt: str) -> dict[str, str] | None:
    """Tag-value pairs of a DMARC record (RFC 7489 6.3), or None when it is not one."""
    parts = [p.strip() for p in txt.split(";")]
    if not parts or parts[0].replace(" ", "").upper() != "V=DMARC1":
        return None
    tags: dict[str, str] = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            tags.setdefault(k.strip().lower(), v.strip().lower())
    return tags


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return registrable_domain(a) == registrable_domain(b)


def from_domain(ctx: SmtpContext, message: MessageSettings | None) -> str | None:
    """The single RFC 5322.From domain, or None when there is none or several (RFC 7489 6.6.1)."""
    pm = parsed_message(ctx, message)
    values = pm.raw_header_all("From")
    if len(values) != 1:
        return None
    domains = {domain_of(addr) for _n, addr in email.utils.getaddresses(values) if addr}
    if len(domains) != 1:
        return None
    d = domains.pop()
    return d or None


def _build_dmarc(env: CheckEnv) -> DmarcCheck:
    s = env.settings
    return DmarcCheck(env.block(AuthChecksSettings), s.dns, env.resolver, s.message)


@register_check(
    block="auth",
    settings=AuthChecksSettings,
    enabled=lambda settings: _auth(settings).dmarc,
    build=_build_dmarc,
    symbols=table_symbols("DMARC_"),
)
class DmarcCheck(_AuthCheck):
    name: ClassVar[str] = "dmarc"
    stage: ClassVar[Stage] = Stage.DATA

    def __init__(
        self,
        settings: AuthChecksSettings,
        dns_settings: DnsSettings,
        resolver: dns.asyncresolver.Resolver,
        message: MessageSettings | None = None,
    ) -> None:
        super().__init__(settings, dns_settings, resolver)
        self.message = message

    async def discover(self, sd: SessionDns, domain: str) -> DmarcRecord | str | None:
        """The policy record for `domain` (RFC 7489 6.6.3), "temperror", or None."""
        org = registrable_domain(domain)
        for where, is_org in ((domain, False), (org, True)):
            if is_org and where == domain:
                break
            lk = await sd.lookup(f"_dmarc.{where}", "TXT")
            if lk.failed:
                return "temperror"
            records = [t for t in (parse_dmarc(r) for r in lk.records) if t is not None]
            if len(records) == 1 and "p" in records[0]:
                return DmarcRecord(records[0], where, is_org)
            if len(records) > 1:
                return None  # several records: as if none (6.6.3 step 5)
        return None

    async def run(self, ctx: SmtpContext) -> CheckResult:
        if ctx.raw_message is None:
            return CheckResult(self.name, result="none")
        fdom = from_domain(ctx, self.message)
        if fdom is None:
            return CheckResult(
                self.name,
                symbols=[symbol("DMARC_PERMERROR", "no single From domain")],
                result="permerror",
                auth_results=["dmarc=permerror (no single RFC5322.From domain)"],
            )
        sd = self.session_dns(ctx)
        rec = await self.discover(sd, fdom)
        if rec == "temperror":
            return CheckResult(
                self.name,
                symbols=[symbol("DMARC_TEMPERROR")],
                result="temperror",
                auth_results=[f"dmarc=temperror header.from={ar_value(fdom)}"],
            )
        if not isinstance(rec, DmarcRecord):
            return CheckResult(
                self.name,
                symbols=[symbol("DMARC_NONE")],
                result="none",
                auth_results=[f"dmarc=none header.from={ar_value(fdom)}"],
            )
        if rec.from_org and "np" in rec.tags:
            rec.nonexistent = await self._nonexistent(sd, fdom)
        return self._evaluate(ctx, fdom, rec)

    @staticmethod
    async def _nonexistent(sd: SessionDns, domain: str) -> bool:
        """RFC 9091: NXDOMAIN or NODATA for A, AAAA and MX. Unknown answers mean it exists."""
        for rdtype in ("A", "AAAA", "MX"):
            lk = await sd.lookup(domain, rdtype)
            if lk.status not in (NXDOMAIN, NODATA):
                return False
            if lk.status == NXDOMAIN:
                return True  # the name itself does not exist: no need to ask for more
        return True

    def _evaluate(self, ctx: SmtpContext, fdom: str, rec: DmarcRecord) -> CheckResult:
        spf_res = ctx.results.get("spf")
        dkim_res = ctx.results.get("dkim")
        spf_ok = bool(
            spf_res
            and spf_res.details.get("result") == "pass"
            and aligned(str(spf_res.details.get("domain", "")), fdom, rec.tags.get("aspf", "r"))
        )
        dkim_domains = list(dkim_res.details.get("pass_domains", [])) if dkim_res else []
        dkim_ok = any(aligned(d, fdom, rec.tags.get("adkim", "r")) for d in dkim_domains)
        policy = rec.policy
        details: dict[str, Any] = {
            "from_domain": fdom,
            "policy": policy,
            "record_domain": rec.domain,
            "nonexistent_domain": rec.nonexistent,
            "spf_aligned": spf_ok,
            "dkim_aligned": dkim_ok,
        }
        if spf_ok or dkim_ok:
            return CheckResult(
                self.name,
                symbols=[symbol("DMARC_PASS", f"aligned {'SPF' if spf_ok else 'DKIM'}")],
                result="pass",
                auth_results=[f"dmarc=pass (p={policy}) header.from={ar_value(fdom)}"],
                details=details,
            )
        applies = self._pct_applies(ctx.raw_message or b"", rec.tags.get("pct", "100"))
        effective = policy if applies else "none"
        reject = effective == "reject" and self.settings.reject_dmarc_reject and not ctx.whitelisted
        details["effective_policy"] = effective
        res = CheckResult(
            self.name,
            symbols=[symbol(f"DMARC_FAIL_{effective.upper()}", f"{fdom} policy {policy}")],
            result="fail",
            auth_results=[
                f"dmarc=fail (p={policy} dis={'reject' if reject else 'none'}) "
                f"header.from={ar_value(fdom)}"
            ],
            details=details,
        )
        if reject:
            res.action = CheckAction.REJECT
            res.enhanced_code = "5.7.1"
            res.reason = f"DMARC policy of {fdom} rejects this unauthenticated message"
        return res

    @staticmethod
    def _pct_applies(raw: bytes, pct: str) -> bool:
        try:
            p = max(0, min(100, int(pct)))
        except ValueError:
            p = 100
        if p >= 100:
            return True
        return int(hashlib.sha256(raw).hexdigest()[:8], 16) % 100 < p
