"""A worker process answers the relay's requests in a process of its own, and its death never
leaves a request waiting forever."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.workers import WorkerExited, WorkerFailed, WorkerProcess
from tests.processes import child_processes, ended

MODULE = "tests.echo_worker"


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(MODULE, str(tmp_path), name="echo process")
    yield process
    await process.aclose()


async def test_many_requests_in_flight_each_get_their_own_answer(worker: WorkerProcess) -> None:
    values = [{"n": n, "text": "é" * n} for n in range(200)]
    answers = await asyncio.gather(*(worker.ask(("echo", value)) for value in values))
    assert answers == values


async def test_an_answer_larger_than_the_socket_buffer_arrives_whole(
    worker: WorkerProcess,
) -> None:
    big = os.urandom(3 * 1024 * 1024)
    assert await worker.ask(("echo", big)) == big


async def test_quick_answers_do_not_wait_behind_slow_ones(worker: WorkerProcess) -> None:
    slow = asyncio.ensure_future(worker.ask(("sleep", 2.0)))
    assert await asyncio.wait_for(worker.ask(("echo", "quick")), 1.5) == "quick"
    assert worker.in_flight == 1
    assert await slow == 2.0
    assert worker.in_flight == 0


async def test_a_request_that_raises_in_the_worker_fails_alone(worker: WorkerProcess) -> None:
    with pytest.raises(WorkerFailed, match="internal error: ValueError"):
        await worker.ask(("no such thing", None))
    assert await worker.ask(("echo", 1)) == 1


async def test_a_dead_worker_fails_what_it_had_in_hand_and_is_replaced_on_the_next_request(
    worker: WorkerProcess,
) -> None:
    assert await worker.ask(("echo", 0)) == 0  # past its start
    [first] = child_processes(os.getpid(), MODULE)
    in_hand = asyncio.ensure_future(worker.ask(("sleep", 30)))
    await asyncio.sleep(0.2)
    os.kill(first, signal.SIGKILL)

    with pytest.raises(WorkerExited, match=r"echo process exited \(code -9\)"):
        await asyncio.wait_for(in_hand, 10)
    assert await worker.ask(("echo", "again")) == "again"
    [second] = child_processes(os.getpid(), MODULE)
    assert second != first


async def test_a_request_given_up_on_is_dropped_by_the_worker_too(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    asked = asyncio.ensure_future(worker.ask(("mark-after", (0.5, "finished"))))
    await asyncio.sleep(0.2)
    asked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asked
    await worker.ask(("sleep", 1.0))
    assert not (tmp_path / "finished").exists()


async def test_closing_ends_the_worker_and_signals_meant_for_the_service_do_not(
    worker: WorkerProcess,
) -> None:
    assert await worker.ask(("echo", "up")) == "up"  # past its start, when it sets the signals
    [pid] = child_processes(os.getpid(), MODULE)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert await worker.ask(("echo", "still here")) == "still here"

    await worker.aclose()
    assert await ended(pid)
    assert child_processes(os.getpid(), MODULE) == []
