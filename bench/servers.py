"""Child processes: the fake upstream, the receiver and the relay, each a uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: The relay's own configuration is never inherited from the shell that runs the benchmark.
_CONFIG_PREFIXES = ("RELAY_", "NEBULA_")


def fast_server_flags() -> list[str]:
    """uvloop and httptools when installed (uvicorn[standard] brings them)."""
    flags = []
    if importlib.util.find_spec("httptools"):
        flags += ["--http", "httptools"]
    if importlib.util.find_spec("uvloop"):
        flags += ["--loop", "uvloop"]
    return flags


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine so far, in seconds summed over its cores."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return None
    ticks = [int(value) for value in line.split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    hertz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hertz, sum(ticks) / hertz


class Replicas:
    """Several relays as one, for the figures that add up over processes: memory and CPU."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)

    def rss_mb(self, *, children_only: bool = False) -> float | None:
        found = [s.rss_mb(children_only=children_only) for s in self.servers]
        present = [mb for mb in found if mb is not None]
        return sum(present) if present else None

    def cpu_seconds(self, *, children_only: bool = False) -> float | None:
        found = [s.cpu_seconds(children_only=children_only) for s in self.servers]
        present = [seconds for seconds in found if seconds is not None]
        return sum(present) if present else None


def postgres_cpu() -> float | None:
    """CPU time the PostgreSQL server on this machine has used so far (every `postgres` process,
    and the ended ones its postmaster has reaped), in seconds; None when none runs."""
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if name != "postgres":
            continue
        found = True
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if fields[1] == "1" or _parent_is_not_postgres(int(fields[1])):
            total += int(fields[13]) + int(fields[14])  # the postmaster's reaped children
    return total / os.sysconf("SC_CLK_TCK") if found else None


def _parent_is_not_postgres(pid: int) -> bool:
    try:
        return "(postgres)" not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One uvicorn process, its output in a log file, stopped for sure by `stop`."""

    def __init__(
        self,
        name: str,
        app: str,
        *,
        workdir: Path,
        env: dict[str, str],
        ready_path: str,
        extra_flags: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._ready_path = ready_path
        self.log_path = workdir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
        inherited["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(self.port),
            *(extra_flags or []),
        ]
        self.started_at = time.time()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=workdir, env={**inherited, **env}, stdout=log, stderr=log
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_ready(self, within: float = 30.0) -> float:
        """Wait for a 200 at the ready path; return the seconds it took since the start."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
                try:
                    if (await client.get(self.url + self._ready_path)).status_code == 200:
                        return time.time() - self.started_at
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} was not ready within {within:.0f} s:\n{self.log_tail()}")

    def rss_mb(self, *, children_only: bool = False) -> float | None:
        """Resident memory (VmRSS) of the process and its children (the relay's capture
        and HTTP processes), or of its children alone, in MB; None once they are gone."""
        total = 0
        for pid in self._with_children()[1 if children_only else 0 :]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
                0,
            )
        return total / 1024 if total else None

    def cpu_seconds(self, *, children_only: bool = False) -> float | None:
        """CPU time (user and system, all threads) the process and its live children have
        used, or its children alone, or None once they are gone."""
        total, found = 0, False
        for pid in self._with_children()[1 if children_only else 0 :]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            # The fields after the parenthesized name: utime and stime are the 12th and 13th.
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            found = True
        return total / os.sysconf("SC_CLK_TCK") if found else None

    def _with_children(self) -> list[int]:
        """The process first, then the children of any of its threads."""
        pids = [self.pid]
        for children in Path(f"/proc/{self.pid}/task").glob("*/children"):
            try:
                pids += [int(pid) for pid in children.read_text().split()]
            except OSError:
                continue
        return pids

    async def stop(self, grace: float = 15.0) -> float:
        """SIGTERM, then SIGKILL after `grace` seconds; return the seconds it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self._wait, grace)
        self.kill()
        return time.monotonic() - started

    def _wait(self, seconds: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=seconds)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
