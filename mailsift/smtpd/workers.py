"""Worker processes for the servers that score in-process (``serve smtp``, ``serve spamd``,
``serve milter``): one Python process scores on one core, so N workers use N cores.

The supervisor (the command's own process) binds the listening sockets, then forks the
workers, which inherit them: the kernel hands each new connection to whichever worker
accepts it first, and a worker killed with connections waiting in the queue leaves them to
the others (a socket per worker with ``SO_REUSEPORT`` would drop those). The supervisor
stays small and single-threaded (it never imports the model; a fork from a threaded
process could inherit a lock held by a thread that does not exist in the child):

* it starts the workers and returns once each reported that it listens (a worker that
  dies before that, as a bad setting makes every worker do, stops the command: exit 1);
* it restarts a worker that dies (after ``restart_delay`` when the worker died young, so a
  worker that cannot run is not forked in a tight loop), calling ``on_exit(index)`` first
  so that shared state the dead worker held (its per-IP connections) is released;
* on SIGTERM or SIGINT it sends SIGTERM to every worker, waits up to ``stop_timeout``
  seconds for them to drain and exit, then SIGKILLs what is left.

Each worker dies with the supervisor (``PR_SET_PDEATHSIG``): a supervisor killed with
SIGKILL takes its workers along, as a single-process server goes at once, and the port is
free for a restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from mailsift.lifecycle import die_with_parent

log = logging.getLogger("mailsift.workers")

# run(index, ready) in the forked worker: serve until SIGTERM, call ready() once listening;
# returns the worker's exit status
WorkerMain = Callable[[int, Callable[[], None]], int]


def default_workers() -> int:
    """One worker per CPU core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def listen_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port), as asyncio's
    ``create_server`` makes one (SO_REUSEADDR, non-blocking)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _canon, addr = info[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    index: int
    pid: int
    started: float
    ready_fd: int | None  # read end of the pipe the worker writes to once it listens
    ready: bool = False


class Supervisor:
    """Fork ``workers`` processes running ``main`` and keep them running (module doc)."""

    def __init__(
        self,
        name: str,
        workers: int,
        main: WorkerMain,
        *,
        stop_timeout: float = 30.0,
        restart_delay: float = 1.0,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.n = workers
        self.main = main
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.on_exit = on_exit
        self.workers: dict[int, _Worker] = {}  # by pid
        self._stop = False
        self._helpers: set[int] = set()

    # ---- forking ---------------------------------------------------------------------------
    def _fork(self, index: int) -> _Worker:
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                for other in self.workers.values():
                    if other.ready_fd is not None:
                        os.close(other.ready_fd)
                die_with_parent(parent)

                def ready() -> None:
                    os.write(w, b"1")
                    os.close(w)

                code = self.main(index, ready)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                _exit_child(code)
        os.close(w)
        worker = _Worker(index, pid, time.monotonic(), r)
        self.workers[pid] = worker
        return worker

    def run_helper(self, fn: Callable[[], None]) -> int:
        """Run ``fn`` in a forked child and wait for it (a SIGTERM meanwhile ends it):
        work whose memory the supervisor should not keep, e.g. compiling the rules cache
        once before the workers all load it. Returns its exit status (-signal if killed)."""
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with_parent(parent)
                fn()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                _exit_child(code)
        self._helpers.add(pid)
        try:
            while True:
                if self._stop:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status)
                time.sleep(0.05)
        finally:
            self._helpers.discard(pid)

    # ---- running ---------------------------------------------------------------------------
    def install_signals(self) -> None:
        """SIGTERM / SIGINT stop the supervisor (and through it the workers)."""

        def stop(_signum: int, _frame: object) -> None:
            self._stop = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    @property
    def stopping(self) -> bool:
        return self._stop

    def start(self) -> bool:
        """Fork the workers and wait until each listens; False when one died first or a
        stop was asked meanwhile (the others are then stopped)."""
        for i in range(self.n):
            self._fork(i)
        while not self._stop:
            self._poll_ready(0.1)
            for pid, code in self._reap():
                w = self.workers.pop(pid)
                self._close_ready(w)
                log.error(
                    "%s worker %d (pid %d) exited (%s) before it listened",
                    self.name,
                    w.index,
                    pid,
                    _describe(code),
                )
                self.shutdown()
                return False
            if all(w.ready for w in self.workers.values()):
                return True
        self.shutdown()
        return False

    def serve(self) -> None:
        """Keep the workers running until SIGTERM / SIGINT, then stop them."""
        pending: list[tuple[float, int]] = []  # (when, index): restarts to make
        while not self._stop:
            self._poll_ready(0.1)
            now = time.monotonic()
            for pid, code in self._reap():
                w = self.workers.pop(pid)
                self._close_ready(w)
                young = now - w.started < 5.0
                log.warning(
                    "%s worker %d (pid %d) died (%s); restarting it",
                    self.name,
                    w.index,
                    pid,
                    _describe(code),
                )
                if self.on_exit is not None:
                    self.on_exit(w.index)
                pending.append((now + (self.restart_delay if young else 0.0), w.index))
            for when, index in list(pending):
                if when <= now and not self._stop:
                    pending.remove((when, index))
                    self._fork(index)
        self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after stop_timeout."""
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.workers and time.monotonic() < deadline:
            for pid, _code in self._reap():
                self._close_ready(self.workers.pop(pid))
            time.sleep(0.05)
        for pid in list(self.workers):
            log.warning("%s worker (pid %d) did not stop in time: killed", self.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._close_ready(self.workers.pop(pid))

    # ---- bookkeeping -----------------------------------------------------------------------
    def _reap(self) -> list[tuple[int, int]]:
        """(pid, exit status) of each worker that ended."""
        out = []
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                out.append((pid, os.waitstatus_to_exitcode(status)))
        return out

    def _poll_ready(self, timeout: float) -> None:
        fds = {w.ready_fd: w for w in self.workers.values() if w.ready_fd is not None}
        if not fds:
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select(list(fds), [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            w = fds[fd]
            if os.read(fd, 1):
                w.ready = True
            self._close_ready(w)

    @staticmethod
    def _close_ready(w: _Worker) -> None:
        if w.ready_fd is not None:
            os.close(w.ready_fd)
            w.ready_fd = None

    def pids(self) -> list[int]:
        return sorted(self.workers)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _exit_child(code: int) -> None:
    """End a forked child: flush what it printed, then leave without the parent's atexit
    handlers and finalizers (they belong to the supervisor)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def supervise(
    name: str,
    workers: int,
    main: WorkerMain,
    *,
    prepare: Callable[[], None] | None = None,
    banner: Callable[[], None] | None = None,
    stop_timeout: float = 30.0,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """A command's whole supervisor: ``prepare()`` in a helper child (e.g. compile the rules
    cache once), the workers started, ``banner()`` once all listen, then serve until
    SIGTERM / SIGINT. Returns the command's exit status (1: the helper or a worker failed
    before the start; 0: stopped)."""
    sup = Supervisor(name, workers, main, stop_timeout=stop_timeout, on_exit=on_exit)
    sup.install_signals()
    if prepare is not None:
        code = sup.run_helper(prepare)
        if sup.stopping:
            return 0
        if code != 0:
            return 1
    if not sup.start():
        return 0 if sup.stopping else 1
    if banner is not None:
        banner()
    log.info("%s workers: %s", name, " ".join(str(p) for p in sup.pids()))
    sup.serve()
    return 0


def wait_for_signal(ready: Callable[[], None] | None = None) -> None:
    """Block until SIGTERM or SIGINT (handlers installed first, then ``ready()``)."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    if ready is not None:
        ready()
    done.wait()


def serve_until_stopped(server: object, stop: Callable[[], None], ready: Callable[[], None]) -> int:
    """A worker's life once its server listens: report ready, wait for SIGTERM / SIGINT,
    then ``stop()``."""
    wait_for_signal(ready)
    stop()
    return 0


def unix_listen_socket(
    path: os.PathLike[str] | str, mode: int, backlog: int = 128
) -> socket.socket:
    """A listening Unix socket at ``path`` (a stale socket there is replaced), ``mode``."""
    p = os.fspath(path)
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(p).st_mode):
            os.unlink(p)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(p)
        os.chmod(p, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
