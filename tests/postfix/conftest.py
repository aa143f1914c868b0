"""``start_rig(path)``: a real Postfix plugged into mailsift the documented way ``path``
(``milter``, ``proxy``, ``after-queue``: ``tests.fixtures.postfix.DOC_PATHS``), mailsift's
server scoring with the tests' service and checking with clamd, a sink behind both, and a
held-out ham; everything it started stops at the end of the test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from mailsift.config import AntivirusSettings
from mailsift.quarantine import Quarantine
from mailsift.smtpd.checks.antivirus import Antivirus
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import doc_ports, doc_postfix, doc_server, doc_settings, start_postfix
from tests.fixtures.smtp import Sink
from tests.postfix.common import Rig, pick_ham


@pytest.fixture(scope="module")
def start_rig(
    tmp_path_factory: pytest.TempPathFactory,
    test_settings: Any,
    scoring_service: Any,
    clamd_server: Any,
    corpus_messages: Any,
    small_split: Any,
) -> Iterator[Callable[..., Rig]]:
    checks = [Antivirus(AntivirusSettings(clamd_socket=clamd_server.unix_address, timeout=20.0))]
    ham = pick_ham(scoring_service, corpus_messages, small_split)

    with ExitStack() as stack:

        def start(path: str, *, quarantine: bool = False) -> Rig:
            """``quarantine``: the filter holds in a quarantine of its own (``rig.quarantine``)."""
            tmp = tmp_path_factory.mktemp(f"postfix-{path}")
            ports = doc_ports()
            settings = doc_settings(test_settings, tmp / "var", path, ports)
            kw: dict[str, Any] = {"checks": checks}
            if quarantine:
                kw["quarantine"] = Quarantine(
                    settings, scoring_service.store, service=scoring_service
                )
            sink = Sink(dir=tmp / "sink", port=free_port()).start()
            stack.callback(sink.stop)
            rig = Rig(
                sink,
                ham,
                settings,
                lambda: doc_server(path, settings, scoring_service, **kw),
                kw.get("quarantine"),
            )
            rig.start_server()
            stack.callback(lambda: rig.server.stop())
            rig.pf = start_postfix(*doc_postfix(path, ports), sink.port)  # once mailsift listens
            stack.callback(rig.pf.remove)
            stack.callback(rig.pf.stop)
            return rig

        yield start
