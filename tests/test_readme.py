"""The README's "Try it in one minute" works exactly as written: a task submitted to the
simulator, a watch registered, and the signed webhook arriving at the listener, verified."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.commands import REPO, command_environment, running

MARKER = "<!-- try-it: tests/test_readme.py runs this block exactly as written -->"


def try_it_block() -> str:
    readme = (REPO / "README.md").read_text()
    after_marker = readme.split(MARKER, 1)[1]
    match = re.match(r"\s*```sh\n(.*?)```", after_marker, re.DOTALL)
    assert match, "the try-it marker must be followed by a ```sh block"
    return match.group(1)


@contextlib.contextmanager
def ports_of(script: str) -> Iterator[None]:
    """Holds the README's fixed ports for this test, which fails plainly if they are taken.

    A lock file serializes concurrent test runs on one machine; anything else on those ports is
    reported rather than raced with.
    """
    ports = sorted({int(port) for port in re.findall(r"--port (\d+)", script)})
    lock_path = Path(tempfile.gettempdir()) / "video-webhook-relay-readme-ports.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for port in ports:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    pytest.fail(f"port {port}, used by the README's try-it lines, is taken")
        yield


@pytest.mark.timeout(120)
async def test_the_try_it_lines_deliver_a_verified_webhook_to_the_listener(
    tmp_path: Path,
) -> None:
    script = try_it_block()
    # `python` in the README is the interpreter the package is installed in.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = command_environment(PATH=path)

    with ports_of(script):
        async with running("bash", "-c", script, env=env, cwd=tmp_path, new_session=True) as (
            _,
            output,
        ):
            registered = await output.wait_for_lines(
                lambda line: line.startswith("watch wat_"), within=60, count=3
            )
            watch_ids = [line.split()[1] for line in registered]
            events = await output.wait_for_lines(
                lambda line: any(f"watch={watch_id}" in line for watch_id in watch_ids),
                within=60,
                count=3,
            )
            checked = await output.wait_for_lines(
                lambda line: line.strip().startswith("video "), within=30, count=3
            )

    # Every result form (a link, a data: URI, the download API) arrives as the relay's own link.
    for event in events:
        assert "task.succeeded" in event
        assert "status=succeeded" in event
        assert re.search(r"url=http://127.0.0.1:18765/v1/files/wat_\w+\?expires=", event)
        assert event.endswith("  verified"), output.text
    assert all("sha256 ok" in line for line in checked), checked
    assert "NOT VERIFIED" not in output.text
