"""Storage for the capture tests: a local directory, and an S3-compatible server on loopback."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.servers import free_port

S3_KEY = "test-key"
S3_SECRET = "test-secret"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto in server mode: a real S3 API over HTTP, not a mock of our own code."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The relay settings of each storage backend; every capture test runs on both, with
    captures in a worker process as by default."""
    if request.param == "local":
        return {"storage_dir": str(tmp_path / "files"), "capture_process": True}
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"relay-{secrets.token_hex(4)}"
    httpx.put(f"{endpoint}/{bucket}").raise_for_status()  # moto creates buckets unsigned
    return {
        "storage_url": f"s3://{bucket}/captures",
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": S3_KEY,
        "s3_secret_access_key": S3_SECRET,
        "capture_process": True,
    }
