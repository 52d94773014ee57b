"""Real HTTP servers for tests: the relay talks over sockets, so its tests do too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


async def _run(server: uvicorn.Server) -> None:
    """Turns uvicorn's ``sys.exit`` on a failed startup into an error the awaiting test sees."""
    try:
        await server.serve()
    except SystemExit as exc:
        raise RuntimeError(f"uvicorn failed to start (exit status {exc.code})") from exc


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, port: int = 0, *, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[str]:
    """Serves ``app`` on a loopback port (a free one by default) in the running event loop; yields
    its base URL. With ``tls`` (a certificate file and its key file), it is served over HTTPS.

    Sharing the test's loop keeps the app's state directly inspectable from the test, and port 0
    lets tests run in parallel without colliding.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        log_config=None,  # leave logging to pytest instead of reconfiguring it globally
        timeout_graceful_shutdown=5,  # a hung request must not hang the test run on exit
        # A test's client can sit idle past uvicorn's 5 s on a busy machine, and send on the
        # connection just as the server closes it: a read error of the test's, not the relay's.
        timeout_keep_alive=60,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(_run(server))
    while not server.started:
        if task.done():
            await task  # raises the startup error
            raise RuntimeError("uvicorn stopped before it started serving")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    """A loopback port free right now, for servers that must be told their port up front."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
