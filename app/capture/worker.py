"""Captures' bytes moved in a process of their own, beside the relay's.

The relay's event loop runs every poll and delivery, and a capture costs it milliseconds per
result: each chunk of a download passes through the loop and through worker threads that must
win the GIL from it. Under load the two compete for one interpreter, and captures queue
(docs/capture-benchmark.md). A second process has a GIL and an event loop of its own, so the
bytes (download, decoding, hashing, storing) are moved on another core while the relay keeps
everything else: the database, leases, retries and events. Only a small request and a small
answer per capture cross between the two, over a socket pair.

The worker is started with the first capture and started again if it dies: captures it had in
hand fail that try and are tried again, like any download cut short. It exits when the relay
closes its end, or dies, since the socket then reads end-of-file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import signal
import socket
import struct
import sys
from functools import partial
from typing import Any

from app import logs
from app.capture.saving import WORKER_READ_BYTES, ResultSaver, Saved
from app.capture.sources import CaptureFailed
from app.capture.storage import FileStorage
from app.settings import Settings
from app.work import DueCapture

log = logging.getLogger(__name__)

#: Each message is a pickled tuple after its length in 4 bytes, big-endian. Pickle is safe here:
#: both ends are this program, and the socket pair is reachable by no other process.
_LENGTH = struct.Struct(">I")
#: Seconds the worker is given to end after its socket is closed.
EXIT_GRACE = 5.0


class WorkerExited(CaptureFailed):
    def __init__(self, returncode: int | None) -> None:
        super().__init__(
            "worker_exited",
            f"the capture process exited (code {returncode}) during the download",
            permanent=False,
        )


class CaptureProcess:
    """Saves in a worker process (`Saver`). Requests and answers are matched by number, so any
    number of captures can be in the worker at once; the relay's slots bound them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._start_lock = asyncio.Lock()
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Saved]] = {}
        self._numbers = itertools.count()

    async def start(self) -> None:
        """Start the worker ahead of the first capture, which would otherwise wait for it (its
        imports take a fraction of a second): the relay's own start does not wait for it."""
        await self._started()

    async def save(self, capture: DueCapture, *, api_key: str | None) -> Saved:
        writer = await self._started()
        number = next(self._numbers)
        answer: asyncio.Future[Saved] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        try:
            _send(writer, (number, capture, api_key))
            await writer.drain()
            return await answer
        except asyncio.CancelledError:
            # Stopping: the worker drops the download too, rather than finish it for nobody.
            with contextlib.suppress(ConnectionError):
                _send(writer, (number, None, None))
            raise
        except ConnectionError:
            raise WorkerExited(None) from None
        finally:
            self._waiting.pop(number, None)

    async def aclose(self) -> None:
        """Close the worker's socket and wait for it to end; killed if it does not."""
        if self._writer is not None:
            self._writer.close()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), EXIT_GRACE)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._reading is not None:
            await self._reading

    async def _started(self) -> asyncio.StreamWriter:
        async with self._start_lock:
            if self._writer is None:
                ours, theirs = socket.socketpair()
                with theirs:
                    self._process = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", __name__, str(theirs.fileno()),
                        pass_fds=(theirs.fileno(),),
                    )  # fmt: skip
                reader, self._writer = await asyncio.open_connection(sock=ours)
                _send(self._writer, (self._settings,))
                self._reading = asyncio.create_task(self._read(reader, self._process))
                log.info("capture process started", extra={"pid": self._process.pid})
            return self._writer

    async def _read(
        self, reader: asyncio.StreamReader, process: asyncio.subprocess.Process
    ) -> None:
        try:
            while (message := await _receive(reader)) is not None:
                number, outcome = message
                answer = self._waiting.get(number)
                if answer is None or answer.done():
                    continue  # given up on meanwhile
                if isinstance(outcome, Saved):
                    answer.set_result(outcome)
                else:
                    code, text, permanent = outcome
                    answer.set_exception(CaptureFailed(code, text, permanent=permanent))
        except ConnectionError:
            pass
        returncode = await process.wait()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(WorkerExited(returncode))
        if returncode != 0:
            log.warning("capture process exited", extra={"code": returncode})


def _send(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(payload)) + payload)


async def _receive(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at end-of-file."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        return pickle.loads(await reader.readexactly(_LENGTH.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


async def _serve(fd: int) -> None:
    """The worker's side: save what is asked for until the relay closes the socket."""
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    greeting = await _receive(reader)
    if greeting is None:
        return
    settings: Settings = greeting[0]
    logs.configure(settings)
    saver = ResultSaver.from_settings(
        settings, read_bytes=WORKER_READ_BYTES, storage=FileStorage.from_settings(settings)
    )
    running: dict[int, asyncio.Task[None]] = {}
    try:
        while (message := await _receive(reader)) is not None:
            number, capture, api_key = message
            if capture is None:
                if (task := running.get(number)) is not None:
                    task.cancel()
                continue
            task = asyncio.create_task(_save(saver, writer, number, capture, api_key))
            running[number] = task
            task.add_done_callback(partial(_forget, running, number))
    finally:
        for task in list(running.values()):
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        await saver.aclose()


def _forget(running: dict[int, asyncio.Task[None]], number: int, _: asyncio.Task[None]) -> None:
    running.pop(number, None)


async def _save(
    saver: ResultSaver,
    writer: asyncio.StreamWriter,
    number: int,
    capture: DueCapture,
    api_key: str | None,
) -> None:
    outcome: Saved | tuple[str, str, bool]
    try:
        outcome = await saver.save(capture, api_key=api_key)
    except CaptureFailed as exc:
        outcome = (exc.code, exc.message, exc.permanent)
    except Exception as exc:
        log.exception("capture failed unexpectedly", extra={"watch_id": capture.id})
        outcome = ("internal_error", f"internal error: {type(exc).__name__}", False)
    with contextlib.suppress(ConnectionError):
        _send(writer, (number, outcome))
        await writer.drain()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group, and a service manager may signal every process of
    # the service: the relay decides when captures stop (it drains them, then closes the socket).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_serve(int(sys.argv[1])))
