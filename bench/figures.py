"""From the records of the upstream, the receiver and the harness to the printed figures."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.load import Registration
from bench.tasks import in_batch

#: A poll is on schedule when it comes within this many seconds of its due time.
ON_TIME = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Row:
    label: str
    measured: str
    target: str = ""
    met: bool | None = None


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, measured: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(label, measured, target, met))

    def print(self) -> None:
        label_width = max(len(row.label) for row in self.rows)
        measured_width = max(len(row.measured) for row in self.rows)
        target_width = max(len(row.target) for row in self.rows)
        for row in self.rows:
            verdict = {True: "met", False: "MISSED", None: ""}[row.met]
            print(
                f"  {row.label:<{label_width}}  {row.measured:<{measured_width}}"
                f"  {row.target:<{target_width}}  {verdict}".rstrip()
            )
        for note in self.notes:
            print(f"  note: {note}")


def registrations(report: Report, records: Sequence[Registration], planned: int) -> None:
    ok = [r for r in records if r.status == 201]
    failed = len(records) - len(ok)
    if not ok:
        report.add("registrations", "none succeeded")
        return
    span = max(r.done for r in records) - min(r.sent for r in records)
    rate = len(ok) / span if span > 0 else math.nan
    p50 = percentile([r.latency for r in ok], 50) * 1000
    p99 = percentile([r.latency for r in ok], 99) * 1000
    report.add(
        "registrations: rate",
        f"{rate:,.0f} /s ({len(ok):,} in {span:.1f} s)",
        ">= 2,000 /s",
        rate >= 2000,
    )
    report.add(
        "registrations: latency", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms", "p99 < 100 ms", p99 < 100
    )
    if failed or len(records) < planned:
        statuses = Counter(r.status for r in records if r.status != 201)
        answers = ", ".join(f"{n} x {status or 'no answer'}" for status, n in statuses.items())
        report.notes.append(
            f"registrations: {failed} failed ({answers or 'none'}),"
            f" {planned - len(records)} not sent before the deadline"
        )


def polling(
    report: Report,
    tasks: dict[str, Any],
    records: Sequence[Registration],
    *,
    interval: float,
    start: float,
    registered_by: float,
    end: float,
) -> None:
    """On-schedule share of polls up to `end`, from the upstream's own arrival times.

    A task's first poll is due one `interval` after its registration; each later one `interval`
    after the one before. A task still running at `end` whose next poll is overdue by more than a
    second counts as one late poll, so a relay that falls behind cannot look punctual by polling
    less.
    """
    registered = {r.task_id: r.done for r in records if r.status == 201}
    # [on time, late] of the polls due while watches were being registered, and after.
    during, after = [0, 0], [0, 0]
    #: [on time, late] by the 5 s of the run a poll fell due in, to show when polls were late.
    by_due: dict[int, list[int]] = {}
    polls_in_run = 0
    for task_id, done in registered.items():
        record = tasks.get(task_id)
        polls = [t for t in record["polls"] if t <= end] if record else []
        polls_in_run += len(polls)
        due = done + interval
        for at in polls:
            (during if due <= registered_by else after)[at - due > ON_TIME] += 1
            by_due.setdefault(int((due - start) // 5), [0, 0])[at - due > ON_TIME] += 1
            due = at + interval
        terminal = record is not None and record["terminal_at"] is not None
        if not terminal and end - due > ON_TIME:
            (during if due <= registered_by else after)[1] += 1
    on_time, total = during[0] + after[0], sum(during) + sum(after)
    share = on_time / total if total else math.nan
    report.add(
        "polling: on schedule",
        f"{share:.1%} of {total:,} polls within {ON_TIME:.0f} s",
        ">= 95 %",
        share >= 0.95,
    )
    if sum(during) and sum(after):
        report.notes.append(
            f"polling: {during[0] / sum(during):.1%} on schedule of the {sum(during):,} polls due "
            f"while watches were being registered, {after[0] / sum(after):.1%} of the "
            f"{sum(after):,} due after"
        )
    if by_due:
        shares = " ".join(
            f"{100 * ok / (ok + late):.0f}" for ok, late in (by_due[k] for k in sorted(by_due))
        )
        report.notes.append(f"polling: % on schedule by when due, per 5 s of the run: {shares}")
    steady = end - registered_by
    if steady >= 1:
        steady_polls = sum(
            1 for record in tasks.values() for t in record["polls"] if registered_by < t <= end
        )
        steady_rate = f"{steady_polls / steady:,.0f} /s after registrations"
    else:
        steady_rate = "no time after registrations"
    whole = polls_in_run / (end - start)
    report.add(
        "polling: upstream requests",
        f"{whole:,.0f} /s over the run, {steady_rate}",
        "~2,000 /s at 10,000 watches",
    )


def detection_to_delivery(
    report: Report, tasks: dict[str, Any], arrivals: Sequence[Sequence[Any]], *, end: float
) -> None:
    """From the upstream's first terminal answer to the webhook's arrival, for every task that
    ended in the run but those of the batch, whose webhooks the receiver holds back on purpose."""
    first_arrival: dict[str, float] = {}
    for _webhook_id, task_id, _watch_id, kind, at in arrivals:
        if kind in ("task.succeeded", "task.failed") and task_id not in first_arrival:
            first_arrival[task_id] = at
    delays = [
        first_arrival[task_id] - record["terminal_at"]
        for task_id, record in tasks.items()
        if record["terminal_at"] is not None
        and record["terminal_at"] <= end
        and task_id in first_arrival
        and not in_batch(task_id)
    ]
    p50, p99 = percentile(delays, 50) * 1000, percentile(delays, 99) * 1000
    report.add(
        "detection to delivery",
        f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms ({len(delays):,} tasks)",
        "p99 < 250 ms",
        p99 < 250 if delays else None,
    )


def delivery_throughput(
    report: Report,
    arrivals: Sequence[Sequence[Any]],
    *,
    release: float,
    held_back: int,
    polling: bool,
) -> None:
    """How fast the batch's webhooks arrived once the receiver stopped holding them back: the
    relay had them all due at once, so this is its delivery rate, not its polling rate.

    Judged only when nothing else went on meanwhile, as the target is set (webhooks to a fast
    receiver). With other watches still polled, the figure is printed as what it is, and a run
    that planned no batch has none to show.
    """
    label = "delivery throughput, while polling" if polling else "delivery throughput"
    target = ">= 2,000 /s, judged alone" if polling else ">= 2,000 /s"
    batch = sorted(at for _, task_id, _, _, at in arrivals if in_batch(task_id))
    if len(batch) < 2:
        measured = "no backlog was delivered" if held_back else "no batch in this run"
        report.add(label, measured, target, False if held_back else None)
        return
    span = batch[-1] - min(batch[0], release)
    rate = len(batch) / span if span > 0 else math.inf
    busiest = max(Counter(int(at) for at in batch).values())
    report.add(
        label,
        f"{rate:,.0f} /s: a backlog of {len(batch):,} in {span:.1f} s (first "
        f"{batch[0] - release:.2f} s after release, busiest second {busiest:,})",
        target,
        None if polling else rate >= 2000,
    )


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU time used so far, read once a second during the run."""

    at: float
    #: The relay's, all its threads (None once it is gone).
    relay: float | None
    #: The whole machine's (busy, total), summed over its cores.
    machine: tuple[float, float] | None


def cpu(report: Report, samples: Sequence[CpuSample], *, start: float, cores: int) -> None:
    """How busy the relay and the machine were, per 5 s of the run: where the relay's figures
    fall short, this shows whether it was out of CPU or waiting."""
    relay = _per_window(start, [(s.at, s.relay, s.at) for s in samples if s.relay is not None])
    machine = _per_window(start, [(s.at, *s.machine) for s in samples if s.machine is not None])
    if relay:
        report.notes.append(f"relay CPU, % of one core, per 5 s of the run: {relay}")
    if machine:
        report.notes.append(f"machine busy, % of its {cores} cores, per 5 s of the run: {machine}")


def _per_window(start: float, points: Sequence[tuple[float, float, float]]) -> str:
    """The share `used` took of `out_of` in each 5 s of the run, in whole percent; each point is
    (when, used so far, out of so far)."""
    windows: dict[int, list[float]] = {}
    for (at, used, out_of), (_, used_next, out_of_next) in itertools.pairwise(points):
        window = windows.setdefault(int((at - start) // 5), [0.0, 0.0])
        window[0] += used_next - used
        window[1] += out_of_next - out_of
    shares = (windows[key] for key in sorted(windows))
    return " ".join(f"{100 * used / out_of:.0f}" for used, out_of in shares if out_of > 0)


#: The memory and restart targets are set at this many active watches.
TARGET_ACTIVE = 10_000


def memory(report: Report, peak: float | None, at_end: float | None, active: int) -> None:
    """Judged only when the run really had the target's number of active watches."""
    if peak is None:
        report.add("memory: relay RSS", "not measured", "< 200 MB", None)
        return
    report.add(
        "memory: relay RSS",
        f"peak {peak:.0f} MB, {at_end or math.nan:.0f} MB at the end",
        "< 200 MB at 10,000 active",
        peak < 200 if active >= TARGET_ACTIVE else None,
    )
    report.notes.append(f"memory and restart: {active:,} watches were active at the end of the run")


def restart(report: Report, first_poll: float | None, detail: str, active: int) -> None:
    """Seconds from starting the relay again to the first poll the upstream sees."""
    target = "< 5 s at 10,000 active"
    if first_poll is None:
        # With no active watch there is nothing to poll, which is no failure.
        report.add("restart: polling again", f"no poll {detail}", target, False if active else None)
        return
    judged = active >= TARGET_ACTIVE or first_poll >= 5
    report.add(
        "restart: polling again",
        f"{first_poll:.1f} s after start {detail}",
        target,
        first_poll < 5 if judged else None,
    )


def exactly_once(
    report: Report, tasks: dict[str, Any], arrivals: Sequence[Sequence[Any]], *, end: float
) -> None:
    terminal = {
        task_id
        for task_id, record in tasks.items()
        if record["terminal_at"] is not None and record["terminal_at"] <= end
    }
    finals = [a for a in arrivals if a[3] in ("task.succeeded", "task.failed")]
    per_task = Counter(a[1] for a in finals)
    per_id = Counter(a[0] for a in arrivals)
    missing = terminal - per_task.keys()
    duplicates = sum(n - 1 for n in per_task.values() if n > 1)
    repeated_ids = sum(n - 1 for n in per_id.values() if n > 1)
    unexpected = len(per_task.keys() - tasks.keys()) + sum(
        1 for a in finals if a[1] in tasks and tasks[a[1]]["terminal_at"] is None
    )
    report.add(
        "lost webhooks",
        f"{len(missing):,} of {len(terminal):,} ended tasks",
        "0",
        not missing,
    )
    report.add(
        "duplicate webhooks",
        f"{duplicates:,} (same webhook-id again: {repeated_ids:,})",
        "0",
        duplicates == 0 and repeated_ids == 0,
    )
    if unexpected:
        report.notes.append(f"{unexpected} webhooks for tasks the upstream never ended")
    if missing:
        report.notes.append(f"missing, for example: {', '.join(sorted(missing)[:3])}")
