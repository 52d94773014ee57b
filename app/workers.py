"""Work handed to a process of its own, beside the relay's, over a socket pair.

The relay's event loop runs every poll, capture and delivery in one interpreter, and one
interpreter uses one core at a time. A child process has a GIL and an event loop of its own: the
relay hands it work that needs no database (an upstream request and its parsing, a result's
bytes) and keeps the rest, so that only a small request and a small answer per piece of work
cross between the two.

A worker is started on first use and started again on the next use after it dies; whatever it
had in hand fails with `WorkerExited`, for the caller to try again as it would any request cut
short. A worker ignores SIGINT and SIGTERM (a terminal or a service manager may signal every
process of the service: the relay decides when work stops, and then closes the socket), and it
exits when its socket reads end-of-file, which also happens when the relay dies.

Messages are pickled tuples, each after its length in 4 bytes, big-endian. Pickle is safe here:
both ends are this program, and the socket pair is reachable by no other process. Neither side
applies back-pressure: what is in flight is bounded by the relay's slots.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, cast

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
#: Seconds a worker is given to end after its socket is closed.
EXIT_GRACE = 5.0

#: What a worker runs for each request it is sent.
Handler = Callable[[Any], Awaitable[Any]]


class WorkerExited(Exception):
    def __init__(self, name: str, returncode: int | None) -> None:
        super().__init__(f"the {name} exited (code {returncode}) before it answered")
        self.returncode = returncode


class WorkerFailed(Exception):
    """The request raised in the worker: a bug, logged there with its traceback."""


class WorkerProcess:
    """One child process running `python -m <module>` (whose `__main__` calls `serve`), first
    sent `greeting`, then requests. Requests and answers are matched by number, so any number of
    them can be in the worker at once.

    :param name: what the logs call it, e.g. "capture process".
    """

    def __init__(self, module: str, greeting: object, *, name: str) -> None:
        self._module = module
        self._greeting = greeting
        self._name = name
        self._start_lock = asyncio.Lock()
        self._child: _Child | None = None
        self._endings: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count()

    @property
    def in_flight(self) -> int:
        return len(self._child.waiting) if self._child is not None else 0

    async def start(self) -> None:
        """Start the worker ahead of the first request, which would otherwise wait for it (its
        imports take a fraction of a second, or more on a slow machine)."""
        await self._started()

    async def ready(self) -> None:
        """Once the worker takes requests: those sent before would wait, and then all go at
        once.

        :raises WorkerExited: it died before it was ready.
        """
        await asyncio.shield((await self._started()).ready)

    async def ask(self, request: object) -> Any:
        """The worker's answer to `request`.

        :raises WorkerExited: the worker died before it answered.
        :raises WorkerFailed: the request raised in the worker.
        """
        child = await self._started()
        await asyncio.shield(child.ready)
        number = next(self._numbers)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        child.waiting[number] = answer
        try:
            child.link.send((number, request))
            return await answer
        except asyncio.CancelledError:
            # Stopping: the worker drops the work too, rather than finish it for nobody.
            child.link.send((number, None))
            raise
        finally:
            child.waiting.pop(number, None)

    async def aclose(self) -> None:
        """Close the worker's socket and wait for it to end; killed if it does not."""
        child, self._child = self._child, None
        if child is not None:
            child.link.close()
            try:
                await asyncio.wait_for(child.process.wait(), EXIT_GRACE)
            except TimeoutError:
                child.process.kill()
            await child.ended.wait()

    async def _started(self) -> _Child:
        async with self._start_lock:
            if self._child is None:
                self._child = await self._spawn()
            return self._child

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        with theirs:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self._module, str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        child = _Child(process)
        _, child.link = await asyncio.get_running_loop().connect_accepted_socket(
            partial(_Link, child.answer, partial(self._lost, child)), sock=ours
        )
        child.link.send((self._greeting,))
        log.info("%s started", self._name, extra={"pid": process.pid})
        return child

    def _lost(self, child: _Child) -> None:
        if self._child is child:
            self._child = None
        ending = asyncio.create_task(self._end(child))
        self._endings.add(ending)
        ending.add_done_callback(self._endings.discard)

    async def _end(self, child: _Child) -> None:
        returncode = await child.process.wait()
        if not child.ready.done():
            child.ready.set_exception(WorkerExited(self._name, returncode))
            child.ready.exception()  # told to whoever waits; nobody may
        for answer in child.waiting.values():
            if not answer.done():
                answer.set_exception(WorkerExited(self._name, returncode))
        if returncode != 0:
            log.warning("%s exited", self._name, extra={"code": returncode})
        child.ended.set()


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.link: _Link
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = asyncio.Event()

    def answer(self, message: tuple[int, bool, Any] | tuple[()]) -> None:
        if not message:
            self.ready.set_result(None)  # the worker's first message: it takes requests
            return
        number, ok, value = message
        answer = self.waiting.get(number)
        if answer is None or answer.done():
            return  # given up on meanwhile
        if ok:
            answer.set_result(value)
        else:
            answer.set_exception(WorkerFailed(value))


class _Link(asyncio.Protocol):
    """One end of the socket pair, framing messages both ways. A protocol rather than streams:
    a poll's answer is a few hundred bytes, and one read often holds many of them, each handed
    on without a coroutine of its own."""

    def __init__(self, on_message: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._pending: list[bytes] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes, though they behave so.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            end = start + _LENGTH.size + length
            if end > len(buffer):
                break
            message = pickle.loads(buffer[start + _LENGTH.size : end])
            start = end
            self._on_message(message)
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._on_lost()

    def send(self, message: tuple[Any, ...]) -> None:
        """Sent with whatever else is sent in the same turn of the event loop: a wave of polls
        is claimed at once, and one write for the lot spares a system call for each.

        Dropped once the other end is gone: whoever waits for its answer hears of that."""
        if self._transport is None or self._transport.is_closing():
            return
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.append(_LENGTH.pack(len(payload)))
        self._pending.append(payload)
        if len(self._pending) == 2:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        """After what is pending: a transport's close sends what it holds first."""
        if self._transport is not None:
            self._flush()
            self._transport.close()


def serve(open_handler: Callable[[Any], AbstractAsyncContextManager[Handler]]) -> None:
    """The worker's side, run by its module's `__main__`: answer what the relay asks until it
    closes the socket. `open_handler` gets the greeting and gives what answers each request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    main = _serve(int(sys.argv[1]), open_handler)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(
    fd: int, open_handler: Callable[[Any], AbstractAsyncContextManager[Handler]]
) -> None:
    messages: asyncio.Queue[Any] = asyncio.Queue()
    _, link = await asyncio.get_running_loop().connect_accepted_socket(
        partial(_Link, messages.put_nowait, partial(messages.put_nowait, None)),
        sock=socket.socket(fileno=fd),
    )
    greeting = await messages.get()
    if greeting is None:
        return
    running: dict[int, asyncio.Task[None]] = {}
    async with open_handler(greeting[0]) as handle:
        link.send(())
        try:
            while (message := await messages.get()) is not None:
                number, request = message
                if request is None:
                    if (task := running.get(number)) is not None:
                        task.cancel()
                    continue
                task = asyncio.create_task(_answer(handle, link, number, request))
                running[number] = task
                task.add_done_callback(partial(_forget, running, number))
        finally:
            for task in list(running.values()):
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)


def _forget(running: dict[int, asyncio.Task[None]], number: int, _: asyncio.Task[None]) -> None:
    running.pop(number, None)


async def _answer(handle: Handler, link: _Link, number: int, request: Any) -> None:
    try:
        answer = (number, True, await handle(request))
    except Exception as exc:
        log.exception("a request failed unexpectedly in the worker")
        answer = (number, False, f"internal error: {type(exc).__name__}")
    link.send(answer)
