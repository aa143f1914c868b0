"""The deterministic SMTP checks, one module each, built in stage order by ``build_checks``.

=========  ==========================================  =========================================
stage      checks (in order)                           module
=========  ==========================================  =========================================
CONNECT    client white list, DNSBL, reverse DNS       lists, dnsbl, rdns
HELO       HELO/EHLO sanity                            rdns
MAIL       sender lists, sender barring, SPF           lists, barring, authentication
RCPT       recipient barring, recipient lists, grey    barring, lists, greylist
DATA       antivirus, DKIM+ARC, DMARC, URL domains     antivirus, authentication, dnsbl
=========  ==========================================  =========================================

Every check implements ``mailsift.smtpd.checks.base.Check``; symbols and their scores are in
``scores.py``; DNS goes through ``dns.py`` (one resolver, a per-session time budget).
"""

from __future__ import annotations

import dns.asyncresolver

from mailsift.config import Settings
from mailsift.smtpd.checks.antivirus import Antivirus
from mailsift.smtpd.checks.authentication import DkimCheck, DmarcCheck, SpfCheck
from mailsift.smtpd.checks.barring import RecipientBarring, SenderBarring
from mailsift.smtpd.checks.base import Check, Clock, Stage, system_clock
from mailsift.smtpd.checks.dns import make_resolver
from mailsift.smtpd.checks.dnsbl import Dnsbl, UriDnsbl
from mailsift.smtpd.checks.greylist import Greylist
from mailsift.smtpd.checks.lists import ClientLists, RecipientLists, SenderLists
from mailsift.smtpd.checks.rdns import HeloCheck, ReverseDns
from mailsift.store.base import Store
from mailsift.store.greylist import GreylistStore, greylist_store_from_settings
from mailsift.store.lists import StoreListPolicy

__all__ = ["build_checks"]


def build_checks(
    settings: Settings,
    *,
    resolver: dns.asyncresolver.Resolver | None = None,
    clock: Clock | None = None,
    store: Store | None = None,
    greylist_store: GreylistStore | None = None,
    lists: StoreListPolicy | None = None,
) -> list[Check]:
    """The enabled checks for `settings`, in stage order.

    `store` (the main store, for the black/white lists) is opened from ``settings.store_url``
    when not given; `greylist_store` from ``settings.greylist.backend``.
    """
    res = resolver or make_resolver(settings.dns)
    clk = clock or system_clock
    checks: list[Check] = []
    policy = lists
    if policy is None:
        if store is None:
            from mailsift.store import open_store_for

            store = open_store_for(settings)
        policy = StoreListPolicy(store)

    # CONNECT
    checks.append(ClientLists(policy))
    if settings.dnsbl.enabled and any(z.kind == "ip" for z in settings.dnsbl.zones):
        checks.append(Dnsbl(settings.dnsbl, settings.dns, res))
    if settings.rdns.enabled:
        checks.append(ReverseDns(settings.rdns, settings.dns, res))
        # HELO
        checks.append(HeloCheck(settings.rdns, settings.smtp, settings.dns, res))
    # MAIL
    checks.append(SenderLists(policy))
    sender_barring = SenderBarring.from_settings(settings.barring, settings.smtp)
    if len(sender_barring.list):
        checks.append(sender_barring)
    if settings.auth.spf:
        checks.append(SpfCheck(settings.auth, settings.smtp, settings.dns, res))
    # RCPT
    rcpt_barring = RecipientBarring.from_settings(settings.barring, settings.smtp)
    if len(rcpt_barring.list):
        checks.append(rcpt_barring)
    checks.append(RecipientLists(policy))
    if settings.greylist.enabled:
        gstore = greylist_store or greylist_store_from_settings(settings)
        checks.append(Greylist(settings.greylist, gstore, clk))
    # DATA
    if settings.antivirus.enabled:
        checks.append(Antivirus(settings.antivirus))
    if settings.auth.dkim or settings.auth.arc:
        checks.append(DkimCheck(settings.auth, settings.dns, res))
    if settings.auth.dmarc:
        checks.append(DmarcCheck(settings.auth, settings.dns, res, settings.message))
    if settings.dnsbl.enabled and any(z.kind == "domain" for z in settings.dnsbl.zones):
        checks.append(UriDnsbl(settings.dnsbl, settings.dns, res, settings.message))
    checks.sort(key=lambda c: Stage(c.stage))  # stable: keeps the order within a stage
    return checks
