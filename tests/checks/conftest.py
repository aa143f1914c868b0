"""Fixtures of the check tests: settings and a resolver pointed at the test DNS server."""

from __future__ import annotations

import pytest

from mailsift.smtpd.checks.dns import make_resolver
from tests.checks.helpers import make_settings


@pytest.fixture
def settings(dns_settings):  # type: ignore[no-untyped-def]
    return make_settings(dns_settings)


@pytest.fixture
def resolver(settings):  # type: ignore[no-untyped-def]
    return make_resolver(settings.dns)
