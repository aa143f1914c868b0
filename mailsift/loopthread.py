"""LoopThread: an asyncio server on an event loop of its own, in a daemon thread.

The SMTP filter, the milter and the spamd front end each listen on a loop of their own so a
command, a test or an embedding program can start and stop them like a plain object:
``start()`` returns once the server listens (or raises what kept it from listening) and
``stop()`` stops the loop, lets ``_shutdown`` close the server and finish what is in flight,
and waits for the thread. Subclasses give ``_start_async`` (bind and listen, on the loop)
and ``_shutdown``; those that can let the work under way end before they stop give
``_drain`` and call ``_drain_thread(seconds)`` first in their ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self


class LoopThread:
    thread_name = "mailsift-loop"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def _start_async(self) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_async())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _drain(self, timeout: float) -> None:
        """Stop taking work and let what is under way end, for up to ``timeout`` s."""
        raise NotImplementedError

    def _drain_thread(self, timeout: float) -> None:
        """Run ``_drain(timeout)`` on the loop and wait for it (nothing when ``timeout`` is 0
        or the loop is not running)."""
        if timeout > 0 and self._loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout + 5)

    def _start_thread(self) -> None:
        """Run the loop in its thread; return once it listens, else raise why it did not."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error

    def _stop_thread(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._thread = None

    def start(self) -> Self:
        self._start_thread()
        return self

    def stop(self) -> None:
        self._stop_thread()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
