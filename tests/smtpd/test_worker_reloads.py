"""Model reloads reach every worker of ``mailsift serve smtp --workers 2`` (real processes,
a real store, Postfix's smtp-sink as the next hop).

Which model a worker serves is read from the verdict it records: a message is sent while
the other worker is stopped (SIGSTOP), so the connection lands on the one asked about,
and the store holds the model version that scored it.

* a reload announced as the API announces it (``ModelSync.bump``: the var dir's generation
  file and the store's generation, on SQLite and PostgreSQL; on PostgreSQL also from
  another node, through the store alone) is followed by each worker, which logs it under
  its own pid;
* a reload announced while the workers start (PostgreSQL: the test holds a lock on the
  generation table until both workers wait for it, then re-points the served model and
  writes a new generation) is not lost: once both listen, both serve the new model.
"""

from __future__ import annotations

import os
import signal
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailsift.api.reload import GENERATION_KEY, ModelSync, generation_file
from mailsift.store import open_store
from tests.api import test_reload
from tests.fixtures.smtp import OUTSIDE_IP
from tests.smtpd.test_workers import BODY, Workers, _env, _stop

pytestmark = pytest.mark.integration

second_model_dir = test_reload.second_model_dir  # a module fixture: another model version
POLL_SECONDS = 0.2
DEADLINE = 60.0  # the poll interval and a model load, with a wide margin on a busy machine
RECORD_SECONDS = 10.0  # a verdict reaches the store within a writer commit or two


def _model_version(path: Path) -> str:
    from mailsift.classifier.model import SpamModel

    return str(SpamModel.load(path).version)


@pytest.fixture
def served(tmp_path: Path, small_model_dir: Path) -> Path:
    """The served-model symlink (re-pointed by the tests), on the small model."""
    link = tmp_path / "serving-model"
    link.symlink_to(small_model_dir.resolve(), target_is_directory=True)
    return link


class Filter:
    """A running ``serve smtp --workers 2`` and what the tests ask of it."""

    def __init__(self, srv: Workers, port: int, store_url: str) -> None:
        self.srv = srv
        self.port = port
        self.store_url = store_url

    def version_through(self, worker: int) -> str:
        """The model version that scores a message on a connection taken by ``worker``
        (the other workers are stopped meanwhile)."""
        others = [p for p in self.srv.workers() if p != worker]
        sender = f"reload-{uuid.uuid4().hex[:12]}@example.org"
        msg = (f"From: Al Smith <{sender}>\r\nTo: Bob Jones <bob@mailsift.test>\r\n"
               f"Subject: lunch on friday?\r\nMessage-ID: <{uuid.uuid4().hex}@example.org>\r\n"
               f"\r\n{BODY}")  # fmt: skip
        for pid in others:
            _stop(pid)
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60,
                              source_address=(OUTSIDE_IP, 0)) as c:  # fmt: skip
                c.sendmail(sender, ["bob@mailsift.test"], msg)
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
        # the verdict is recorded by the worker's background writer, after the reply: wait
        # for it (the writer commits what queued during its previous commit)
        deadline = time.monotonic() + RECORD_SECONDS
        store = open_store(self.store_url)
        try:
            while not (
                rows := store.query("SELECT model_version FROM verdicts WHERE sender = ?", [sender])
            ):
                assert time.monotonic() < deadline, f"no verdict recorded for {sender}"
                time.sleep(0.05)
        finally:
            store.close()
        assert len(rows) == 1, rows
        return str(rows[0]["model_version"])

    def wait_all_serve(self, version: str) -> None:
        """Each worker serves ``version`` before the deadline (asked again until then)."""
        deadline = time.monotonic() + DEADLINE
        for pid in self.srv.workers():
            while (seen := self.version_through(pid)) != version:
                assert time.monotonic() < deadline, (
                    f"worker {pid} still serves {seen}, not {version}\n{self.srv.text()[-3000:]}"
                )
                time.sleep(POLL_SECONDS)


@pytest.fixture
def start_filter(
    tmp_path: Path, sink_factory: Any, smtp_tls_files: Any, served: Path, test_settings: Any
) -> Iterator[Callable[..., Filter]]:
    """``start_filter(store_url, wait=True)``: ``serve smtp --workers 2`` on ``store_url``
    (None: the SQLite store of its var dir), serving ``served``; stopped at teardown (exit
    status 0)."""
    started: list[Workers] = []

    def start(store_url: str | None = None, *, wait: bool = True) -> Filter:
        extra = {"MAILSIFT_API__RELOAD_POLL_SECONDS": str(POLL_SECONDS)}
        if store_url is not None:
            extra["MAILSIFT_STORE__URL"] = store_url
        env, port = _env(tmp_path, sink_factory().port, smtp_tls_files, served, test_settings,
                         **extra)  # fmt: skip
        srv = Workers(tmp_path, env, wait=wait)
        started.append(srv)
        url = store_url or f"sqlite:///{tmp_path / 'var' / 'mailsift.db'}"
        return Filter(srv, port, url)

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            code = srv.stop()
            assert code == 0, srv.text()[-3000:]


@pytest.mark.parametrize("where", ["sqlite", "postgresql", "postgresql-other-node"])
def test_every_worker_follows_a_reload(
    where: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    start_filter: Callable[..., Filter],
    served: Path,
    small_model_dir: Path,
    second_model_dir: Path,
) -> None:
    store_url = None if where == "sqlite" else str(request.getfixturevalue("pg_store_url"))
    f = start_filter(store_url)
    old, new = _model_version(small_model_dir), _model_version(second_model_dir)
    workers = f.srv.workers()
    assert len(workers) == 2
    f.wait_all_serve(old)
    # what POST /v1/models/reload does once its worker loaded the new model: bump the
    # generation of its node's var dir and of the store (another node: its own var dir)
    var_dir = tmp_path / ("other-node" if where.endswith("other-node") else "var")
    store = open_store(f.store_url)
    try:
        test_reload._point(served, second_model_dir)
        ModelSync(generation_file(var_dir), store=store).bump()
    finally:
        store.close()
    f.wait_all_serve(new)
    text = f.srv.text()
    for pid in workers:
        assert f"mailsift.service[{pid}]: model reloaded: {new}" in text, text[-3000:]
    assert f.srv.workers() == workers  # followed by the workers, none restarted


def test_a_reload_while_the_workers_start_reaches_every_worker(
    pg_store_url: str,
    start_filter: Callable[..., Filter],
    served: Path,
    second_model_dir: Path,
) -> None:
    """The reload lands when each worker has built its filter up to reading the model
    generation (whatever it loaded by then), as a promotion on another node may land while
    this node starts or restarts a worker."""
    open_store(pg_store_url).close()  # migrated: the generation table exists
    new = _model_version(second_model_dir)
    with psycopg.connect(pg_store_url) as lock, psycopg.connect(pg_store_url) as watch:
        watch.autocommit = True
        lock.execute("LOCK TABLE model_generation IN ACCESS EXCLUSIVE MODE")
        f = start_filter(pg_store_url, wait=False)
        deadline = time.monotonic() + 180
        while _waiting_on(watch, "model_generation") < 2:
            assert f.srv.proc.poll() is None, f.srv.text()[-3000:]
            assert time.monotonic() < deadline, f.srv.text()[-3000:]
            time.sleep(0.05)
        test_reload._point(served, second_model_dir)
        lock.execute(
            "INSERT INTO model_generation (name, generation, updated) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET generation = excluded.generation,"
            " updated = excluded.updated",
            (GENERATION_KEY, uuid.uuid4().hex, time.time()),
        )
        lock.commit()
    f.srv.wait_banner()
    f.wait_all_serve(new)


def _waiting_on(conn: psycopg.Connection[Any], table: str) -> int:
    """Sessions waiting for a lock on ``table`` (of the connection's search path)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
        (table,),
    ).fetchone()
    return int(row[0]) if row else 0
