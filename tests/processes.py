"""The relay as operators run it, in a process of its own that a test can kill."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.conftest import API_KEY, ENCRYPTION_KEY, SIGNING_SECRET, UPSTREAM_KEY, Upstream
from tests.flaky_upstream import FlakyUpstream
from tests.servers import free_port

#: `python -m …` of the two ways operators start the relay; the port is appended.
UVICORN = ("uvicorn", "app.main:app")
SERVE = ("app", "serve")


def relay_env(
    database_url: str, upstream: Upstream | FlakyUpstream, folder: Path, **env: str
) -> dict[str, str]:
    """The environment of a relay process: quick polls and retries, files kept in `folder`."""
    env = {
        **os.environ,
        "RELAY_DATABASE_URL": database_url,
        "NEBULA_BASE_URL": upstream.url,
        "NEBULA_API_KEY": UPSTREAM_KEY,
        "RELAY_API_KEY": API_KEY,
        "RELAY_SIGNING_SECRET": SIGNING_SECRET,
        "RELAY_POLL_INTERVAL": "0.2",
        "RELAY_TICK_INTERVAL": "0.05",
        "RELAY_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
        "RELAY_RETRY_JITTER": "0",
        "RELAY_UPSTREAM_TIMEOUT": "1",
        "RELAY_DELIVERY_TIMEOUT": "1",
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_STORAGE_DIR": str(folder / "files"),
        **env,
    }
    if make_url(database_url).get_backend_name() != "sqlite":
        # A SQLite relay keeps a key of its own beside its file; PostgreSQL needs one configured.
        env.setdefault("RELAY_ENCRYPTION_KEY", ENCRYPTION_KEY)
    return env


@asynccontextmanager
async def relay_process(
    database_url: str,
    upstream: Upstream | FlakyUpstream,
    log: Path,
    launch: tuple[str, ...] = UVICORN,
    /,
    **env: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    """The relay as operators run it (`uvicorn app.main:app`, or `launch`), configured by the
    environment."""
    port = free_port()
    env = relay_env(database_url, upstream, log.parent, **env)
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *launch, "--port", str(port),
            env=env, stdout=output, stderr=output,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            yield http, process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def child_processes(parent: int, running: str) -> list[int]:
    """The pids of `parent`'s children whose command line contains `running`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        # The parent's pid is the second field after the command's name, which is in parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and running in command:
            found.append(int(entry.name))
    return found


async def ended(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has ended (or is a zombie nobody waits for) within `within` s."""
    async with asyncio.timeout(within):
        while _state(pid) not in (None, "Z"):  # noqa: ASYNC110 (nothing to wait on)
            await asyncio.sleep(0.05)
    return True


def _state(pid: int) -> str | None:
    """The process's state letter (`R`, `S`, `Z`…), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
