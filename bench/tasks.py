"""How a benchmark task's course is written into its id, so the fake upstream needs no setup.

`bench_<n>_<seconds>_<outcome>` ends `<seconds>` after the first poll the upstream receives;
`bench_<n>_at<epoch>_<outcome>` ends at a wall-clock time (a batch that ends together).
The outcome is `succeeded`, `failed`, or `never` (still running when the run stops).
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCEEDED = "succeeded"
FAILED = "failed"
NEVER = "never"
OUTCOMES = (SUCCEEDED, FAILED, NEVER)


@dataclass(frozen=True, slots=True)
class Course:
    outcome: str
    #: Seconds from the first poll to the end.
    seconds: float | None = None
    #: Wall-clock end (`time.time()`), for tasks that end together whenever they were polled.
    at: float | None = None

    @property
    def ends(self) -> bool:
        return self.outcome != NEVER


def task_id(n: int, course: Course) -> str:
    when = f"at{course.at:.3f}" if course.at is not None else f"{course.seconds or 0:.1f}"
    return f"bench_{n}_{when}_{course.outcome}"


def in_batch(task_id: str) -> bool:
    """Whether the task ends at a wall-clock time, together with the rest of its batch."""
    course = parse(task_id)
    return course is not None and course.at is not None


def outcome(task_id: str) -> str | None:
    """How the task ends, or None for an id not of the benchmark's."""
    course = parse(task_id)
    return None if course is None else course.outcome


def parse(task_id: str) -> Course | None:
    parts = task_id.split("_")
    if len(parts) != 4 or parts[0] != "bench" or parts[3] not in OUTCOMES:
        return None
    when, outcome = parts[2], parts[3]
    try:
        if when.startswith("at"):
            return Course(outcome, at=float(when[2:]))
        return Course(outcome, seconds=float(when))
    except ValueError:
        return None
