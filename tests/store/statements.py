"""What the store sent to the database, for tests of how the database runs it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

Executed = list[tuple[str, Any]]


@contextmanager
def recorded() -> Iterator[Executed]:
    """Every statement run meanwhile, with its first set of parameters."""
    executed: Executed = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        executed.append((statement, parameters[0] if many else parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def walks(plan_step: str) -> bool:
    """A step that reads a whole table, or every row of one state (`(state=?)` and no more)."""
    return plan_step.startswith("SCAN ") or plan_step.endswith("(state=?)")
