"""The watch list's filters, read from the query string (so a filtered view is a URL to share),
and the UTC times the console's forms take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from app.api.schemas import MAX_TASK_ID_LENGTH
from app.console.access import ConsoleError
from app.delivery import webhooks
from app.ids import is_id
from app.states import WatchState
from app.store.watch_queries import WatchFilter
from app.upstream import TaskStatus

STATES = [state.value for state in WatchState]
TASK_STATUSES = [status.value for status in TaskStatus]
#: The types a watch's final event can have.
EVENT_TYPES = sorted(webhooks.TERMINAL)
#: The query's filter fields, in the form's order.
FIELDS = ("state", "task_status", "event_type", "created_after", "created_before", "task_id")


@dataclass(frozen=True, slots=True)
class ListQuery:
    matching: WatchFilter
    #: The last watch id of the page before (older ones follow).
    before: str | None
    #: The filter fields as given (empty ones left out), to fill the form in and build links.
    given: dict[str, str]

    def link(self, *, before: str | None = None) -> str:
        """The query string of this view, or of its page older than `before`."""
        fields = dict(self.given)
        if before is not None:
            fields["before"] = before
        return urlencode(fields)


def list_query(params: QueryParams) -> ListQuery:
    """:raises ConsoleError: 400, saying which field is wrong and what it takes."""
    given = {name: params[name].strip() for name in FIELDS if params.get(name, "").strip()}
    before = params.get("before") or None
    if before is not None and not is_id("wat", before):
        raise ConsoleError(400, "'before' must be a watch id, as the list's 'older' link has it.")
    return ListQuery(
        WatchFilter(
            state=_state(given),
            task_status=_one_of(given, "task_status", TASK_STATUSES),
            event_type=_one_of(given, "event_type", EVENT_TYPES),
            created_after=_time(given, "created_after"),
            created_before=_time(given, "created_before"),
            task_id_prefix=_task_id_prefix(given),
        ),
        before,
        given,
    )


def utc_time(value: str, field: str) -> datetime:
    """A `datetime-local` value (`2026-11-28T18:12`, seconds optional), read as UTC; a time with
    an offset is taken too.

    :raises ConsoleError: 400 for anything else.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConsoleError(
            400, f"'{field}' must be a date and time in UTC, e.g. 2026-11-28T18:12."
        ) from None


def _one_of(given: dict[str, str], field: str, allowed: list[str]) -> str | None:
    value = given.get(field)
    if value is not None and value not in allowed:
        raise ConsoleError(400, f"'{field}' must be one of: {', '.join(allowed)}.")
    return value


def _state(given: dict[str, str]) -> WatchState | None:
    value = _one_of(given, "state", STATES)
    return None if value is None else WatchState(value)


def _time(given: dict[str, str], field: str) -> datetime | None:
    return utc_time(given[field], field) if field in given else None


def _task_id_prefix(given: dict[str, str]) -> str | None:
    value = given.get("task_id")
    if value is None:
        return None
    if len(value) > MAX_TASK_ID_LENGTH or not value.isprintable():
        raise ConsoleError(
            400,
            f"'task_id' must be the start of a task id: at most {MAX_TASK_ID_LENGTH} printable "
            "characters.",
        )
    return value
