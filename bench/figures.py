"""From the records of the upstream, the receiver and the harness to the printed figures."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import results
from bench.load import Registration
from bench.results import MB
from bench.tasks import SUCCEEDED, in_batch, outcome

SUCCEEDED_EVENT = "task.succeeded"
#: A poll is on schedule when it comes within this many seconds of its due time.
ON_TIME = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Window:
    """A span of the run whose polls, by when due, get a row of their own."""

    since: float
    until: float
    target: float = 0.95
    #: Count only the polls of tasks outside the batch (the others, while the batch ends).
    others_only: bool = False


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
    windows: dict[str, Window] | None = None,
) -> None:
    """On-schedule share of polls up to `end`, from the upstream's own arrival times.

    A task's first poll is due one `interval` after its registration; each later one `interval`
    after the one before. A task still running at `end` whose next poll is overdue by more than a
    second counts as one late poll, so a relay that falls behind cannot look punctual by polling
    less. `windows` names spans of the run (e.g. while captures ran) whose polls, by when due,
    get a row of their own, each judged by its own target.
    """
    windows = windows or {}
    #: [on time, late] of the polls due within each window.
    in_window = {name: [0, 0] for name in windows}
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
            for name, window in windows.items():
                if window.since <= due <= window.until and not (
                    window.others_only and in_batch(task_id)
                ):
                    in_window[name][at - due > ON_TIME] += 1
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
    for name, (ok, late) in in_window.items():
        window = windows[name]
        in_share = ok / (ok + late) if ok + late else math.nan
        report.add(
            f"polling: on schedule {name}",
            f"{in_share:.1%} of {ok + late:,} polls due {window.since - start:.1f}-"
            f"{window.until - start:.1f} s into the run",
            f">= {window.target:.0%}",
            in_share >= window.target if ok + late else None,
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


def _first_finals(arrivals: Sequence[Sequence[Any]]) -> dict[str, float]:
    """When each task's first final webhook arrived."""
    first_arrival: dict[str, float] = {}
    for _webhook_id, task_id, _watch_id, kind, at in arrivals:
        if kind in ("task.succeeded", "task.failed") and task_id not in first_arrival:
            first_arrival[task_id] = at
    return first_arrival


def _ended_in_run(tasks: dict[str, Any], end: float) -> dict[str, float]:
    """When each task that ended within the run, but those of the batch, first answered so."""
    return {
        task_id: record["terminal_at"]
        for task_id, record in tasks.items()
        if record["terminal_at"] is not None
        and record["terminal_at"] <= end
        and not in_batch(task_id)
    }


def detection_to_delivery(
    report: Report,
    tasks: dict[str, Any],
    arrivals: Sequence[Sequence[Any]],
    *,
    end: float,
    capture: bool = False,
) -> None:
    """From the upstream's first terminal answer to the webhook's arrival, for every task that
    ended in the run but those of the batch, whose webhooks the receiver holds back on purpose.

    With `capture`, for the failed tasks only: a succeeded one's webhook waits for its capture,
    which `capture_latency` measures."""
    first_arrival = _first_finals(arrivals)
    delays = [
        first_arrival[task_id] - terminal_at
        for task_id, terminal_at in _ended_in_run(tasks, end).items()
        if task_id in first_arrival and not (capture and outcome(task_id) == SUCCEEDED)
    ]
    p50, p99 = percentile(delays, 50) * 1000, percentile(delays, 99) * 1000
    report.add(
        "detection to delivery, failed tasks" if capture else "detection to delivery",
        f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms ({len(delays):,} tasks)",
        "p99 < 250 ms",
        p99 < 250 if delays else None,
    )


#: The capture latency target is set for results of this size (and holds for smaller ones).
CAPTURE_TARGET_BYTES = 2 * MB


def capture_latency(
    report: Report,
    tasks: dict[str, Any],
    arrivals: Sequence[Sequence[Any]],
    downloads: Sequence[Sequence[Any]],
    *,
    end: float,
    settled: float,
    size: int,
) -> None:
    """From the poll that saw a task succeed (the upstream's first terminal answer) to the
    receiver's 2xx for its `task.succeeded`, for the succeeded tasks that ended in the run but
    those of the batch (as `detection_to_delivery`); notes split it at the download.

    A task whose webhook had not come by `settled` (when the records were read, after the
    settle) counts with the time until then, a lower bound: leaving it out would flatter the
    percentiles of a relay that falls behind; figures it bounds are printed with ">=".
    """
    first_arrival = _first_finals(arrivals)
    first_download: dict[str, Sequence[Any]] = {}
    for record in downloads:
        first_download.setdefault(record[0], record)
    ended = {
        task_id: terminal_at
        for task_id, terminal_at in _ended_in_run(tasks, end).items()
        if outcome(task_id) == SUCCEEDED
    }
    delays = {
        task_id: first_arrival.get(task_id, settled) - terminal_at
        for task_id, terminal_at in ended.items()
    }
    undelivered = {task_id for task_id in ended if task_id not in first_arrival}
    report.add(
        "capture: success seen to receiver 2xx",
        f"{_p50_p99(delays, undelivered)}, {size / MB:g} MB each",
        "p99 < 1 s for 2 MB",
        percentile(list(delays.values()), 99) < 1
        if delays and size <= CAPTURE_TARGET_BYTES
        else None,
    )
    if undelivered:
        report.notes.append(
            f"capture: {len(undelivered):,} of those tasks had no webhook yet when the records "
            "were read, and count with the time until then"
        )
    parts: dict[str, list[float]] = {"wait": [], "download": [], "store and deliver": []}
    for task_id, terminal_at in ended.items():
        got = first_download.get(task_id)
        if got is None or got[2] is None or task_id not in first_arrival:
            continue
        parts["wait"].append(got[1] - terminal_at)
        parts["download"].append(got[2] - got[1])
        parts["store and deliver"].append(first_arrival[task_id] - got[2])
    if parts["wait"]:
        split = "; ".join(
            f"{name} p50 {percentile(values, 50) * 1000:,.0f} ms,"
            f" p99 {percentile(values, 99) * 1000:,.0f} ms"
            for name, values in parts.items()
        )
        report.notes.append(
            "capture, success seen to receiver 2xx, in parts, of the tasks delivered (wait: "
            "until the relay asked for the file; download: as the upstream sent it; then stored "
            f"and delivered): {split}"
        )
    batch_seen = min(
        (r["terminal_at"] for t, r in tasks.items() if in_batch(t) and r["terminal_at"]),
        default=None,
    )
    if batch_seen is not None:
        before = {t: delays[t] for t, at in ended.items() if at < batch_seen}
        after = {t: delays[t] for t, at in ended.items() if at >= batch_seen}
        report.notes.append(
            "capture, success seen to receiver 2xx, of the tasks seen succeeded before the "
            f"batch's first: {_p50_p99(before, undelivered)}; from then on, behind the batch's "
            f"{sum(1 for t in tasks if in_batch(t) and outcome(t) == SUCCEEDED):,} results: "
            f"{_p50_p99(after, undelivered)}"
        )


def _p50_p99(seconds: dict[str, float], bounded: set[str]) -> str:
    """p50 and p99 of `seconds`, with ">=" where the value is a task's of `bounded` (a lower
    bound) or could be pushed up by one."""
    if not seconds:
        return "no task"
    values = list(seconds.values())
    floor = min((seconds[t] for t in bounded if t in seconds), default=math.inf)
    shown = []
    for q in (50, 99):
        value = percentile(values, q)
        shown.append(f"p{q} {'>= ' if value >= floor else ''}{value * 1000:,.0f} ms")
    return f"{', '.join(shown)} ({len(values):,} tasks)"


def batch_captures(
    report: Report,
    tasks: dict[str, Any],
    downloads: Sequence[Sequence[Any]],
    arrivals: Sequence[Sequence[Any]],
    *,
    release: float,
    size: int,
) -> None:
    """How fast the relay captured the results of the batch that ended together: from the first
    poll that saw one of them succeed to the end of the last one's download. No target: the
    figure shows how long a burst of results holds up the captures queued behind it."""
    seen = [
        record["terminal_at"]
        for task_id, record in tasks.items()
        if in_batch(task_id) and outcome(task_id) == SUCCEEDED and record["terminal_at"]
    ]
    ends = sorted(r[2] for r in downloads if in_batch(r[0]) and r[2] is not None)
    if not ends or not seen:
        return
    span = ends[-1] - min(seen)
    rate = len(ends) / span if span > 0 else math.inf
    report.add(
        "capture: the batch's results",
        f"{len(ends):,} downloaded within {span:.1f} s of the first seen succeeded "
        f"({rate:,.0f} /s, {rate * size / MB:,.0f} MB/s; seen over {max(seen) - min(seen):.1f} s)",
        "(no target)",
    )
    last = max(
        (
            at
            for _, task_id, _, kind, at in arrivals
            if kind == SUCCEEDED_EVENT and in_batch(task_id)
        ),
        default=None,
    )
    if last is not None:
        report.notes.append(
            f"capture: the batch's last task.succeeded arrived {last - release:.1f} s after the "
            "receiver stopped holding them back"
        )


def captured_files(
    report: Report, captures: Sequence[Sequence[Any]], *, size: int, checked: Sequence[str]
) -> None:
    """What the `task.succeeded` webhooks said of their files: each must name a file of the
    size served, with its SHA-256; `checked` is what downloading a few of them from the relay
    found."""
    videos = [c for c in captures if c[1] is not None]
    failed = Counter(c[3] for c in captures if c[3] is not None)
    neither = sum(1 for c in captures if c[1] is None and c[3] is None)
    wrong_size = [c for c in videos if c[1] != size]
    wrong_sha = [c for c in videos if c[2] != results.sha256(size)]
    measured = f"{len(videos):,} with data.video; "
    if wrong_size or wrong_sha:
        measured += f"{len(wrong_size):,} of the wrong size, {len(wrong_sha):,} of the wrong sha256"
    else:
        measured += f"every size_bytes {size:,} ({size / MB:g} MB) and sha256 right"
    if neither:
        measured += f"; {neither:,} with neither video nor capture_error"
    report.add(
        "capture: files in webhooks",
        measured,
        "size and sha256 of the file served",
        bool(videos) and not wrong_size and not wrong_sha and not neither,
    )
    codes = ", ".join(f"{n:,} x {code}" for code, n in failed.most_common())
    report.add(
        "capture: failed (data.capture_error)",
        f"{sum(failed.values()):,}" + (f" ({codes})" if codes else ""),
        "0",
        not failed,
    )
    if checked:
        tally = ", ".join(f"{n} {what}" for what, n in Counter(checked).items())
        files = "file" if len(checked) == 1 else "files"
        report.notes.append(
            f"capture: {len(checked)} {files} downloaded back through the relay's links: {tally}"
        )


def burst_window(
    tasks: dict[str, Any], arrivals: Sequence[Sequence[Any]], *, ended_at: float
) -> Window | None:
    """The burst's seconds: from the batch's end to the arrival of its last webhook; the polls
    of the other tasks due then are held to the issue's 90 %."""
    first = _first_finals(arrivals)
    delivered = [at for task_id, at in first.items() if in_batch(task_id)]
    if not delivered:
        return None
    return Window(ended_at, max(delivered), target=0.90, others_only=True)


def burst_webhooks(
    report: Report, tasks: dict[str, Any], arrivals: Sequence[Sequence[Any]], *, ended_at: float
) -> None:
    """How fast the batch's webhooks went out while the relay saw its tasks end, with the
    receiver taking them as they came.

    The batch ends at once, but each task is seen to end at its next poll, so detections spread
    over one poll interval (10,000 tasks at 5 s: 2,000 a second): webhooks cannot go out faster.
    Met at 2,000 a second, or when they kept pace with the detections: p99 within 1 s of them.
    """
    first = _first_finals(arrivals)
    seen = {
        task_id: at
        for task_id, record in tasks.items()
        if in_batch(task_id) and (at := record["terminal_at"]) is not None
    }
    sent = {task_id: first[task_id] for task_id in seen if task_id in first}
    if not sent:
        report.add("burst: webhooks", "none of the batch arrived", ">= 2,000 /s", False)
        return
    sent_span = max(sent.values()) - ended_at
    seen_span = max(seen.values()) - ended_at
    rate = len(sent) / sent_span if sent_span > 0 else math.inf
    seen_rate = len(seen) / seen_span if seen_span > 0 else math.inf
    delays = [at - seen[task_id] for task_id, at in sent.items()]
    p99 = percentile(delays, 99) * 1000
    report.add(
        "burst: webhooks",
        f"{rate:,.0f} /s: {len(sent):,} of {len(seen):,} in {sent_span:.1f} s from the batch's "
        f"end, seen to end at {seen_rate:,.0f} /s; detection to delivery p99 {p99:,.0f} ms",
        ">= 2,000 /s, or p99 < 1 s after seen",
        len(sent) == len(seen) and (rate >= 2000 or p99 < 1000),
    )


def delivery_throughput(
    report: Report,
    arrivals: Sequence[Sequence[Any]],
    *,
    release: float,
    held_back: int,
    polling: bool,
    capturing: bool = False,
) -> None:
    """How fast the batch's webhooks arrived once the receiver stopped holding them back: the
    relay had them all due at once, so this is its delivery rate, not its polling rate.

    Judged only when nothing else went on meanwhile, as the target is set (webhooks to a fast
    receiver). With other watches still polled, the figure is printed as what it is, and a run
    that planned no batch has none to show. With `capturing`, the batch's webhooks only come
    as fast as their results are captured: the figure is that of the captures, not judged.
    """
    label = "delivery throughput, while polling" if polling else "delivery throughput"
    target = ">= 2,000 /s, judged alone" if polling else ">= 2,000 /s"
    if capturing:
        label, target, polling = "delivery throughput, while capturing", "(judged without)", True
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


def capture_one(
    report: Report,
    rss: Sequence[tuple[float, float]],
    *,
    terminal_at: float | None,
    arrival: float | None,
    download: Sequence[Any] | None,
    size: int,
) -> None:
    """The relay's resident memory while it captured one large result: `rss` is (when, MB)
    sampled from before the poll that saw the task succeed until after its webhook came."""
    if terminal_at is None or arrival is None:
        seen = "the task never answered succeeded" if terminal_at is None else "no webhook came"
        report.add("capture of one result: relay RSS", seen, "rise < 50 MB", False)
        return
    before = [mb for at, mb in rss if at < terminal_at]
    during = [mb for at, mb in rss if terminal_at <= at <= arrival]
    after = [mb for at, mb in rss if at > arrival]
    if not before or not during:
        report.add("capture of one result: relay RSS", "not sampled", "rise < 50 MB", None)
        return
    baseline, peak = before[-1], max(during)
    report.add(
        "capture of one result: relay RSS",
        f"baseline {baseline:.1f} MB, peak {peak:.1f} MB: rise {peak - baseline:.1f} MB"
        f" ({len(during):,} samples while it ran)",
        "rise < 50 MB",
        peak - baseline < 50,
    )
    timing = f"success seen to receiver 2xx {arrival - terminal_at:.2f} s"
    if download is not None and download[2] is not None:
        took = download[2] - download[1]
        timing += (
            f"; the download {took:.2f} s ({size / MB / took:,.0f} MB/s), from "
            f"{download[1] - terminal_at:.2f} s after success was seen"
        )
    report.add(f"capture of one result: {size / MB:g} MB", timing)
    note = (
        f"relay RSS before the capture: {min(before):.1f} to {max(before):.1f} MB over "
        f"{len(before):,} samples"
    )
    if after:
        note += f"; {after[-1]:.1f} MB {rss[-1][0] - arrival:.1f} s after the webhook"
    report.notes.append(note)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU time used so far, read once a second during the run."""

    at: float
    #: The relay's, all its threads (None once it is gone).
    relay: float | None
    #: The whole machine's (busy, total), summed over its cores.
    machine: tuple[float, float] | None
    #: The PostgreSQL server's, with `--database` (None otherwise).
    database: float | None = None
    #: The part of `relay` its worker processes (capture, HTTP) used.
    workers: float | None = None
    #: The bench's own servers', the fake upstream and the receiver together.
    harness: float | None = None


def cpu(report: Report, samples: Sequence[CpuSample], *, start: float, cores: int) -> None:
    """How busy the relay, the bench's own servers and the machine were, per 5 s of the run:
    where the relay's figures fall short, this shows whether it was out of CPU or waiting, and
    how much of the machine the harness left it."""
    relay = _per_window(start, [(s.at, s.relay, s.at) for s in samples if s.relay is not None])
    harness = _per_window(
        start, [(s.at, s.harness, s.at) for s in samples if s.harness is not None]
    )
    machine = _per_window(start, [(s.at, *s.machine) for s in samples if s.machine is not None])
    if relay:
        report.notes.append(f"relay CPU, % of one core, per 5 s of the run: {relay}")
    if harness:
        report.notes.append(
            f"the bench's fake upstream and receiver, % of one core, per 5 s of the run: {harness}"
        )
    if machine:
        report.notes.append(f"machine busy, % of its {cores} cores, per 5 s of the run: {machine}")


def cost_per_poll(
    report: Report,
    samples: Sequence[CpuSample],
    tasks: dict[str, Any],
    *,
    since: float,
    until: float,
) -> None:
    """The relay's CPU (all its processes and threads) per poll the upstream saw, between the
    end of the registrations and the end of the run: all-in, with the deliveries and write-backs
    the polls bring about; on PostgreSQL, with the database server's CPU apart and added."""
    within = [s for s in samples if s.relay is not None and since <= s.at <= until]
    if len(within) < 2:
        report.add("cost per poll: relay CPU", "not measured", "<= 0.20 ms on SQLite", None)
        return
    first, last = within[0], within[-1]
    assert first.relay is not None and last.relay is not None
    used = last.relay - first.relay
    polls = sum(
        1 for record in tasks.values() for at in record["polls"] if first.at <= at <= last.at
    )
    if not polls:
        report.add("cost per poll: relay CPU", "no polls", "<= 0.20 ms on SQLite", None)
        return
    per_poll = 1000 * used / polls
    span = last.at - first.at
    if first.workers is not None and last.workers is not None and last.workers > first.workers:
        in_workers = 1000 * (last.workers - first.workers) / polls
        report.notes.append(
            f"cost per poll: the relay's own process {per_poll - in_workers:.3f} ms, "
            f"its worker processes {in_workers:.3f} ms"
        )
    if first.database is None or last.database is None:
        report.add(
            "cost per poll: relay CPU",
            f"{per_poll:.3f} ms ({used:.1f} s of CPU, {polls:,} polls in {span:.0f} s)",
            "<= 0.20 ms on SQLite",
            per_poll <= 0.20,
        )
        return
    server = 1000 * (last.database - first.database) / polls
    report.add(
        "cost per poll: relay + PostgreSQL",
        f"{per_poll + server:.3f} ms: relay {per_poll:.3f} ms, PostgreSQL server {server:.3f} ms "
        f"({polls:,} polls in {span:.0f} s)",
        "<= 0.35 ms on PostgreSQL",
        per_poll + server <= 0.35,
    )


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


def memory(
    report: Report,
    peak: float | None,
    at_end: float | None,
    active: int,
    *,
    children: float | None = None,
) -> None:
    """Judged only when the run really had the target's number of active watches. The relay's
    RSS is that of all its processes; `children` is the peak of its worker processes alone."""
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
    if children is not None:
        report.notes.append(
            f"memory: the relay's RSS counts its worker processes (capture, HTTP), which peaked "
            f"at {children:.0f} MB together"
        )


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


def polled_again_after_kill(
    report: Report,
    tasks: dict[str, Any],
    *,
    killed_at: float,
    restarted_at: float,
    interval: float,
) -> None:
    """How long after the relay was killed each watch still active then was polled by the
    relay started again: the dead process's leases must lapse before the watches it held are
    polled again. (Polls that reach the upstream between the kill and the restart were sent by
    the dead process.)"""
    gaps = []
    missed = 0
    for record in tasks.values():
        polls: list[float] = record["polls"]
        ended = record["terminal_at"] is not None and record["terminal_at"] <= killed_at
        if ended or not polls or polls[0] > killed_at:
            continue
        after = [at for at in polls if at > restarted_at]
        if after:
            gaps.append(after[0] - killed_at)
        else:
            missed += 1
    target = "<= 2 intervals"
    if not gaps and not missed:
        report.add("restart after SIGKILL: polled again", "no active watch", target, None)
        return
    worst = max(gaps, default=math.inf)
    value = (
        f"every one of {len(gaps):,} active watches within {worst:.1f} s "
        f"({worst / interval:.2f} intervals); p50 {percentile(gaps, 50):.1f} s"
    )
    if missed:
        value = f"{missed:,} active watches not polled again; " + value
    report.add("restart after SIGKILL: polled again", value, target, worst <= 2 * interval)


def exactly_once(
    report: Report,
    tasks: dict[str, Any],
    arrivals: Sequence[Sequence[Any]],
    *,
    end: float,
    downloads: Sequence[Sequence[Any]] | None = None,
) -> None:
    """Every task that ended within the run has exactly one final webhook. With `downloads`
    (capture on), a succeeded task whose result the relay had not yet downloaded when the
    records were read is still queued for its capture, not lost: it is counted apart."""
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
    queued: set[str] = set()
    if downloads is not None:
        downloaded = {d[0] for d in downloads if d[2] is not None}
        queued = {t for t in missing if outcome(t) == SUCCEEDED and t not in downloaded}
        missing -= queued
    report.add(
        "lost webhooks",
        f"{len(missing):,} of {len(terminal):,} ended tasks"
        + (f" ({len(queued):,} more still waited for their capture)" if queued else ""),
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
