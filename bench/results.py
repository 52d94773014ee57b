"""The bytes of a benchmark task's result, for the capture modes (`--capture-mb`,
`--capture-one-mb`).

A result of any size is one block of 1 MiB of seeded random bytes, repeated and cut at the size:
the fake upstream streams it a block at a time, the same block object every time, so serving
a result of hundreds of MB costs it 1 MiB; the harness knows every result's size and SHA-256
without keeping one.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

#: A "MB" of the capture modes: a mebibyte, as the relay's RSS figures count.
MB = 1024 * 1024
BLOCK_BYTES = MB
_SEED = 20261204


def size_of(mb: float) -> int:
    """Bytes in `mb` MB."""
    return round(mb * MB)


@functools.cache
def block() -> bytes:
    """The repeated block: made once per process."""
    return random.Random(_SEED).randbytes(BLOCK_BYTES)


def chunks(size: int) -> Iterator[bytes]:
    """The result of `size` bytes, a block at a time (the last one cut short)."""
    whole, rest = divmod(size, BLOCK_BYTES)
    data = block()
    for _ in range(whole):
        yield data
    if rest:
        yield data[:rest]


@functools.cache
def sha256(size: int) -> str:
    """The SHA-256 of the result of `size` bytes, in hex, as the relay reports it."""
    digest = hashlib.sha256()
    for chunk in chunks(size):
        digest.update(chunk)
    return digest.hexdigest()
