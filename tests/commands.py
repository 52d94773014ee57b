"""The `python -m app` commands run as a user runs them: real processes, output read as printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).parent.parent


def command_environment(**values: str) -> dict[str, str]:
    """This machine's environment without any relay option, plus `values`; `app` importable."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("RELAY_", "NEBULA_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


@dataclass
class Output:
    """What a process has printed so far (standard output and error, interleaved)."""

    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def collect(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    async def wait_for_lines(
        self, matches: Callable[[str], bool], count: int = 1, within: float = 20.0
    ) -> list[str]:
        """The first `count` lines for which `matches` holds, waiting for them if need be."""

        def found() -> list[str]:
            return [line for line in self.lines if matches(line)][:count]

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(found()) == count)
        return found()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.asynccontextmanager
async def running(
    *args: str, env: dict[str, str], cwd: Path, new_session: bool = False
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Output]]:
    """Runs `args` in the background for the duration of the block, collecting its output.

    With `new_session`, the process leads its own process group and the whole group is ended
    on exit, which stops the background jobs a shell script started too.
    """
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=new_session,
    )
    assert process.stdout is not None
    output = Output()
    reader = asyncio.create_task(output.collect(process.stdout))
    try:
        yield process, output
    finally:
        with contextlib.suppress(ProcessLookupError):
            if new_session:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.terminate()
        await process.wait()
        await reader


async def run_app_command(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`python -m app <args>` to completion: its exit status and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, printed.decode()


async def wait_until_serving(url: str, within: float = 20.0) -> None:
    """Until something answers HTTP at `url`, whatever the status."""
    async with httpx.AsyncClient(trust_env=False) as http, asyncio.timeout(within):
        while True:
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
