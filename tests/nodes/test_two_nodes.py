"""Two complete mailsift nodes (API + SMTP filter each, own var dirs and ports) sharing one
PostgreSQL store, one Redis greylist and one MLflow tracking database: the deployment shape
of docs/integrations.md ("Several nodes").

* feedback given on node A changes the score of the same message on node B within the
  feedback sync interval (both replay the store's learn-event log);
* a greylist triplet first seen on A passes on B (the triplets live in Redis);
* a new model put into service on A (``POST /v1/models/reload`` on A) is served by B's API
  and each of B's two SMTP workers within the reload poll interval, while B answers every
  request (the generation travels through the store's ``model_generation``; the nodes serve
  the model from one shared path here, from the shared MLflow registry's champion in
  production);
* killing node A's SMTP filter mid-load loses nothing it acknowledged (250 only after the
  next hop took the message), and B takes the rest.
"""

from __future__ import annotations

import base64
import signal
import smtplib
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from mailsift.config import Settings
from mailsift.process import settings_env
from tests.api import test_reload
from tests.fixtures.api import ApiServer, api_test_settings, start_api_server
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import doc_block
from tests.fixtures.process import child_pids
from tests.fixtures.smtp import OUTSIDE_IP, Sink
from tests.fixtures.store import pg_schema_url
from tests.smtpd.test_cli import MAILSIFT

REDIS_URL = "redis://127.0.0.1:6379/0"
GREY_DELAY = 2.0


@dataclass
class Node:
    name: str
    settings: Settings
    api: ApiServer
    smtp: subprocess.Popen[bytes]
    smtp_port: int
    log: Path

    def kill_smtp(self) -> None:
        if self.smtp.poll() is None:
            self.smtp.send_signal(signal.SIGKILL)
            self.smtp.wait(10)

    def stop_smtp(self) -> None:
        if self.smtp.poll() is None:
            self.smtp.send_signal(signal.SIGTERM)
            self.smtp.wait(30)


def node_settings(
    base: Settings, var: Path, model: Path, store_url: str, prefix: str, mlflow_db: Path,
    sink_port: int, smtp_port: int,
) -> Settings:  # fmt: skip
    """The documented two-node configuration, with this test's database schema, Redis and
    MLflow file in place of its URLs; the SMTP filter in front of the sink, checks that need
    DNS or clamd off."""
    conf = tomllib.loads(doc_block("two-nodes mailsift.toml"))
    local = {
        ("store", "url"): store_url,
        ("greylist", "backend"): REDIS_URL,
        ("mlflow", "tracking_uri"): f"sqlite:///{mlflow_db}",
    }
    for (section, key), value in local.items():
        assert key in conf[section], (section, key)
        conf[section][key] = value
    data = api_test_settings(base, var, model).model_dump()
    for section, values in conf.items():
        data[section].update(values)
    data["greylist"].update(redis_prefix=prefix, delay=GREY_DELAY)
    # two SMTP workers per node: a reload must reach each (each logs it under its pid)
    data["smtp"].update(
        port=smtp_port, submission_port=None, next_hop_port=sink_port, workers=2,
        relay_networks=["127.0.0.1/32"], mailboxes_file=None, accounts_file=None,
    )  # fmt: skip
    for block in ("dnsbl", "rdns", "antivirus"):
        data[block]["enabled"] = False
    data["auth"].update(spf=False, dkim=False, arc=False, dmarc=False)
    data["dns"].update(nameservers=["127.0.0.1"], port=free_port())
    return Settings(**data)


def start_smtp(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    proc = subprocess.Popen(
        [MAILSIFT, "serve", "smtp"], env=settings_env(settings), stdout=out, stderr=out
    )
    out.close()
    # the supervisor's port accepts connections from its bind on; the banner comes once
    # every worker has loaded its model and listens
    deadline = time.monotonic() + 180
    while "mailsift SMTP filter on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
    test_settings: Settings,
    small_model_dir: Path,
    pg_database: str,
) -> Iterator[tuple[Node, Node, Sink]]:
    tmp = tmp_path_factory.mktemp("two-nodes")
    link = tmp / "serving-model"  # what both nodes serve (re-pointed by the promotion test)
    link.symlink_to(small_model_dir.resolve(), target_is_directory=True)
    schema = f"n_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    store_url = pg_schema_url(pg_database, schema)
    prefix = f"mailsift-test:{uuid.uuid4().hex}:"
    sink = Sink(dir=tmp / "sink", port=free_port()).start()
    started: list[Any] = []
    try:
        made: list[Node] = []
        keys: dict[str, str] = {}
        for name in ("a", "b"):
            var = tmp / name
            port = free_port()
            s = node_settings(test_settings, var, link, store_url, prefix,
                              tmp / "mlflow.db", sink.port, port)  # fmt: skip
            ctx = start_api_server(s, workers=1, make_keys=(name == "a"))
            api = ctx.__enter__()
            started.append(ctx)
            if name == "a":
                keys = api.keys
            api.keys = keys  # one store: node A's keys are valid on node B
            log = var / "smtp.log"
            made.append(Node(name, s, api, start_smtp(s, log), port, log))
        yield made[0], made[1], sink
    finally:
        for ctx in reversed(started):
            ctx.__exit__(None, None, None)
        for n in locals().get("made", []):
            n.stop_smtp()
        sink.stop()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{prefix}*"):
            r.delete(key)
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def score(node: Node, raw: bytes) -> float:
    with node.api.client(node.api.keys["score"]) as c:
        r = c.post("/v1/score", content=raw, headers={"Content-Type": "message/rfc822"})
        assert r.status_code == 200, r.text
        return float(r.json()["probability"])


def message(tag: str) -> bytes:
    return (
        f"From: Carol Kent <carol@partner.example>\r\nTo: Bob <bob@mailsift.test>\r\n"
        f"Subject: quarterly figures {tag}\r\nMessage-ID: <{tag}@partner.example>\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"Hi Bob,\r\nthe quarterly figures {tag} are attached as discussed on the phone.\r\n"
        f"Could you check the totals before Friday?\r\nThanks, Carol\r\n"
    ).encode()


def campaign(tag: str) -> bytes:
    """The message the feedback test reports as spam: words of its own, so the lesson it
    teaches every node leaves the other tests' mail (``message``) alone."""
    return (
        f"From: Offers <deals@promo.example>\r\nTo: Bob <bob@mailsift.test>\r\n"
        f"Subject: exclusive voucher {tag}\r\nMessage-ID: <{tag}@promo.example>\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"Claim your exclusive voucher {tag} now: limited stock, discount codes inside.\r\n"
    ).encode()


def test_feedback_on_a_changes_scores_on_b(nodes: tuple[Node, Node, Sink]) -> None:
    a, b, _ = nodes
    raw = campaign(uuid.uuid4().hex[:8])
    before = score(b, raw)
    with a.api.client(a.api.admin_key) as c:  # an admin's report: a global lesson at once
        body = {"message": base64.b64encode(raw).decode(), "label": "spam",
                "user": "bob@mailsift.test"}  # fmt: skip
        r = c.post("/v1/feedback", json=body)
        assert r.status_code == 200 and r.json()["status"] == "learned", r.text
    # the sync interval plus a generous margin
    deadline = time.monotonic() + a.settings.feedback.sync_interval + 10
    after = score(b, raw)
    while after <= before and time.monotonic() < deadline:
        time.sleep(0.1)
        after = score(b, raw)
    assert after > before, (before, after)


second_model_dir = test_reload.second_model_dir  # a module fixture: another model version


def test_a_reload_on_a_reaches_b_without_dropped_requests(
    nodes: tuple[Node, Node, Sink], small_model_dir: Path, second_model_dir: Path
) -> None:
    a, b, _ = nodes
    link = a.settings.model.path
    assert link is not None and link == b.settings.model.path
    old = httpx.get(b.api.base_url + "/readyz", timeout=10).json()["model_version"]
    stop = threading.Event()
    statuses: list[int] = []
    versions: set[str] = set()

    def load() -> None:
        raw = message("load")
        with b.api.client(b.api.keys["score"]) as c:
            while not stop.is_set():
                r = c.post("/v1/score", content=raw, headers={"Content-Type": "message/rfc822"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.3)
        test_reload._point(link, second_model_dir)
        with a.api.client(a.api.admin_key) as admin:
            r = admin.post("/v1/models/reload")
        assert r.status_code == 200 and r.json()["changed"], r.text
        new = r.json()["version"]
        workers = child_pids(b.smtp.pid)
        assert len(workers) == 2, workers
        lines = [f"mailsift.service[{pid}]: model reloaded: {new}" for pid in workers]
        deadline = time.monotonic() + 20  # the poll interval, a model load, a margin
        while time.monotonic() < deadline:
            current = httpx.get(b.api.base_url + "/readyz", timeout=10).json()["model_version"]
            if current == new and all(line in b.log.read_text() for line in lines):
                break
            time.sleep(0.1)
        assert current == new  # B's API
        text = b.log.read_text()
        assert all(line in text for line in lines), text[-3000:]  # each of B's SMTP workers
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
        test_reload._point(link, small_model_dir)
    assert statuses and set(statuses) == {200}
    assert versions == {old, new}


def _rcpt(port: int, sender: str, rcpt: str) -> tuple[int, bytes]:
    c = smtplib.SMTP("127.0.0.1", port, source_address=(OUTSIDE_IP, 0), timeout=30)
    try:
        c.ehlo("client.example")
        assert c.mail(sender)[0] == 250
        return c.rcpt(rcpt)
    finally:
        c.close()


def test_greylist_triplet_seen_on_a_passes_on_b(nodes: tuple[Node, Node, Sink]) -> None:
    a, b, _ = nodes
    sender = f"{uuid.uuid4().hex[:8]}@partner.example"
    code, text = _rcpt(a.smtp_port, sender, "bob@mailsift.test")
    assert code == 451 and b"4.7.1" in text, text
    code, _ = _rcpt(b.smtp_port, sender, "bob@mailsift.test")
    assert code == 451  # too early on B as well: the same triplet, the same clock
    time.sleep(GREY_DELAY + 0.5)
    code, text = _rcpt(b.smtp_port, sender, "bob@mailsift.test")
    assert code == 250, text


def _send_to_first(tag: str, nodes: tuple[Node, ...], sender: str, acknowledged: list[str]) -> bool:
    for node in nodes:
        try:
            c = smtplib.SMTP("127.0.0.1", node.smtp_port, source_address=(OUTSIDE_IP, 0),
                             timeout=30)  # fmt: skip
            c.sendmail(sender, ["bob@mailsift.test"], message(tag))
            c.quit()
        except OSError:  # node down, a 4xx, or the connection died before the 250
            continue
        acknowledged.append(tag)
        return True
    return False


def test_killing_node_a_mid_load_loses_nothing_acknowledged(
    nodes: tuple[Node, Node, Sink],
) -> None:
    """A client sends 20 messages, to A while A answers, then to B (as an MTA falls back to
    the next MX); A's filter is killed (SIGKILL) after the 8th acknowledgement."""
    a, b, sink = nodes
    run = uuid.uuid4().hex[:8]
    sender = f"load-{run}@partner.example"
    # pass the greylist once (shared), so every message below is judged on its content
    assert _rcpt(a.smtp_port, sender, "bob@mailsift.test")[0] == 451
    time.sleep(GREY_DELAY + 0.5)
    acknowledged: list[str] = []
    for i in range(20):
        tag = f"{run}-{i}"
        # as an MTA does: the next MX when one is down or answers 4xx, and a retry a little
        # later when both defer (a check that timed out on a loaded machine)
        for _attempt in range(20):
            if _send_to_first(tag, (a, b), sender, acknowledged):
                break
            time.sleep(0.5)
        if len(acknowledged) >= 8 and a.smtp.poll() is None:
            a.kill_smtp()
    assert a.smtp.returncode == -signal.SIGKILL
    assert len(acknowledged) == 20  # B took over
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = [m["Message-ID"] for m in sink.messages() if run in str(m["Message-ID"])]
        if len(got) >= len(acknowledged):
            break
        time.sleep(0.1)
    delivered = sorted(str(m).strip("<>").split("@")[0] for m in got)
    assert delivered == sorted(acknowledged)
    # every acknowledged message's verdict is in the shared store (B's writer records after
    # its replies: wait for its commits)
    deadline = time.monotonic() + 10
    with psycopg.connect(a.settings.store.url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM verdicts WHERE sender = %s", (sender,)
            ).fetchone()
            n = 0 if row is None else int(row[0])
            if n >= len(acknowledged) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert n >= len(acknowledged)
