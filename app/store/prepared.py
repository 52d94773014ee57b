"""Statements run with many rows at a time, their parameters laid out for the driver directly.

The write-backs of polls and deliveries run thousands of rows a second. For each row of an
`executemany`, SQLAlchemy's `Connection.execute` builds a dict of every parameter of the
compiled statement and then a second structure for the driver, in generic code that handles
every kind of statement, and for these statements that is a large part of each row's cost.
`Prepared` does what `Connection.execute` does for such a statement, compiled the same way and
cached, but lays each row out with a plan made once: the row's values in the driver's order,
through the same bind processors, with the statement's own constants filled in. It is run with
`Connection.exec_driver_sql`, so logging, events and the wrapping of driver errors are
SQLAlchemy's, as with `Connection.execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

Row = Mapping[str, Any]
_Processor = Callable[[Any], Any]


class Prepared:
    """A plain `INSERT` or `UPDATE` (no `RETURNING`) whose values come bound by name in each row.

    Every row of a call must have the same keys; they name the bound parameters and, for an
    `INSERT` of a bare table, its columns, as with `Connection.execute`. Drivers that take their
    parameters by name rather than by position get the statement through `Connection.execute`.
    """

    def __init__(self, statement: UpdateBase) -> None:
        if statement.returning_column_descriptions:
            raise ValueError("only statements without RETURNING")
        self._statement = statement
        self._plans: dict[tuple[type[Dialect], str, tuple[str, ...]], _Plan | None] = {}

    def executemany(self, conn: Connection, rows: Sequence[Row]) -> None:
        if not rows:
            return
        dialect = conn.dialect
        keys = tuple(rows[0])
        cached = (type(dialect), dialect.paramstyle, keys)
        if cached not in self._plans:
            self._plans[cached] = _Plan.of(self._statement, dialect, keys)
        plan = self._plans[cached]
        if plan is None:
            conn.execute(self._statement, rows)
        else:
            conn.exec_driver_sql(plan.sql, [plan.lay_out(row) for row in rows])


class _Plan:
    """The statement compiled for one dialect, and where each of a row's values goes in it."""

    def __init__(self, sql: str, slots: list[tuple[str | None, Any, _Processor | None]]) -> None:
        self.sql = sql
        #: Per parameter, in the driver's order: the row's key, or None for a constant of the
        #: statement; the constant, processed already; the bind processor of the row's value.
        self._slots = slots

    @classmethod
    def of(cls, statement: UpdateBase, dialect: Dialect, keys: Sequence[str]) -> _Plan | None:
        """Compiled as `Connection.execute` compiles for many rows: None if the driver takes
        named parameters."""
        compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("only statements whose parameters are all plain bound values")
        if not compiled.positional or compiled.positiontup is None:
            return None
        slots: list[tuple[str | None, Any, _Processor | None]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                slots.append((name, None, process))
            elif bind.required:
                raise KeyError(f"the rows have no value for the parameter {name!r}")
            else:
                value = bind.effective_value
                slots.append((None, process(value) if process else value, None))
        return cls(compiled.string, slots)

    def lay_out(self, row: Row) -> tuple[Any, ...]:
        return tuple(
            [
                constant if key is None else process(row[key]) if process else row[key]
                for key, constant, process in self._slots
            ]
        )
