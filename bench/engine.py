"""The engine on the SQLite store: tick cost against open handoffs, steps/s, ingest/s.

Usage::

    python bench/engine.py                   # everything (about 2-3 minutes)
    python bench/engine.py --open 200000     # a smaller "large" database
    python bench/engine.py --markdown        # also write the "## Engine (SQLite)"
                                             # section of docs/benchmarks.md

Three measurements, each in one process on a file database in WAL mode:

(a) **Tick cost against table size.** Two databases, one with 10,000 open
    handoffs and one with ``--open`` (default 1,000,000); in each, a set of
    1,000 handoffs comes due at each of ``--trials`` instants (default 5). A
    tick is ``Engine.check`` plus ``Engine.deliver`` at that instant: 1,000
    steps, 1,000 outbox rows. The policy has one step (``1x``: notify the
    owner) so a set, once checked, never comes due again. The two databases
    take turns, tick by tick. Reported: the median tick of each, and their
    ratio (large / small).
Each measurement starts settled: cyclic garbage collected, and the dirty pages of
the databases built before it written back (``os.sync``), so that the kernel
flushing an earlier 400 MB database does not slow the next one down. The
headline throughputs of (b) and (c) are the best of ``--repeat`` runs (default
3), each on a fresh database, with the median beside them: on a shared machine
the slower runs measure the neighbours as much as slakit.

(b) **Steps per second.** ``--steps`` handoffs (default 10,000) with the
    playbook's default policy, both steps due: ``Engine.check`` applies 1x
    (notify owner) and 2x (mark breached, reassign, notify both), each claim
    batch in one transaction with every step's escalation, outbox and trace
    rows. The same steps are also applied with no handoff behind (one check
    when only 1x is due, one when 2x is), each step in its own claim. The time
    spent inside store methods is measured separately, and the same step
    applications are replayed on a fresh database to give the store's own
    ceiling, one transaction per step (``apply_step``) and 500 per transaction
    (``apply_steps``). A profile shows where the engine spends its share.
(c) **Bulk ingest.** ``Engine.start_many`` in batches of 10,000 records
    (``--ingest``, default 50,000), and ``SQLiteStore.insert_many`` of
    ready-made handoffs (the store's ceiling).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Scripts in this folder shadow standard modules (bench/calendar.py): drop the
# folder from sys.path so that `import calendar` anywhere gets the standard library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import argparse  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import runpy  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import attrs  # noqa: E402

import slakit  # noqa: E402
import slakit.adapters.sqlite as sqlite_store  # noqa: E402
from slakit import Engine, ManualClock, Notifier, Policy, _build  # noqa: E402
from slakit.adapters.sqlite import (  # noqa: E402
    _APPLY_STEP,
    _INSERT_ESCALATION,
    _INSERT_OUTBOX,
    _INSERT_TRACE,
    CLAIM_DUE_SQL,
    SQLiteStore,
    _insert_rows,
    _PreparedStep,
    _runs,
)
from slakit.handoff import Handoff  # noqa: E402
from slakit.records import Notification, StepApplication, TraceRecord  # noqa: E402

ROOT = _HERE.parent
DOCS = ROOT / "docs" / "benchmarks.md"
# The shared docs writer, run by path since this folder is off sys.path.
write_section = runpy.run_path(str(_HERE / "_docs.py"))["write_section"]
SECTION = "## Engine (SQLite)"
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
SLA = timedelta(minutes=30)


class NullNotifier(Notifier):
    """Accepts every notification at once (the bench measures slakit, not a network)."""

    def __init__(self) -> None:
        self.name = "null"
        self.sent = 0

    def send(self, notification: Notification) -> None:
        self.sent += 1


def one_step_policy() -> Policy:
    return Policy.from_config(
        {"basis": "wall", "sla_minutes": 30, "steps": [{"at": "1x", "do": ["notify:owner"]}]},
        name="default",
    )


def engine_for(store: SQLiteStore, policy: Policy, **kw: Any) -> Engine:
    return Engine(
        store=store,
        policies=[policy],
        notifiers=[NullNotifier()],
        clock=ManualClock(T0),
        worker_id="bench",
        **kw,
    )


def fresh_db(folder: Path, name: str) -> Path:
    path = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# -- data ---------------------------------------------------------------------------


def open_handoff(template: Handoff, hid: str, started_at: datetime) -> Handoff:
    due = started_at + SLA
    return attrs.evolve(
        template,
        id=hid,
        started_at=started_at,
        next_due_at=due,
        deadline_at=due,
        wall_deadline_at=due,
        business_deadline_at=due,
        ingested_at=started_at,
    )


def start_trace(h: Handoff) -> TraceRecord:
    return TraceRecord(
        trace_id=h.trace_id,
        handoff_id=h.id,
        policy=h.policy,
        rule="start",
        action="start",
        actor="engine",
        at=h.started_at,
        outcome="ok",
        detail={"owner": h.owner},
    )


def populate(store: SQLiteStore, total: int, due_sets: list[datetime], batch: int = 50_000) -> None:
    """``total`` open handoffs: 1,000 due at each instant of ``due_sets``, the rest later."""
    template = Handoff(
        id="template",
        policy="default",
        started_at=T0,
        owner="alice",
        backup_owner="bob",
        sla_minutes=30.0,
        within_business_hours=True,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        channel="web",
        version=1,
    )

    def rows() -> Iterator[Handoff]:
        for k, now in enumerate(due_sets):
            for i in range(1000):
                # Due 15 minutes before its set's instant.
                yield open_handoff(template, f"due{k}-{i:04d}", now - SLA - timedelta(minutes=15))
        later = T0 + timedelta(days=30)
        for i in range(total - 1000 * len(due_sets)):
            yield open_handoff(template, f"open-{i:07d}", later + timedelta(seconds=i))

    chunk: list[Handoff] = []
    for h in rows():
        chunk.append(h)
        if len(chunk) == batch:
            store.insert_many(chunk, [start_trace(x) for x in chunk])
            chunk = []
    if chunk:
        store.insert_many(chunk, [start_trace(x) for x in chunk])


# -- timing helpers -----------------------------------------------------------------


class StoreTimer:
    """Wraps a store's methods to add up the time spent inside them."""

    def __init__(self, store: SQLiteStore) -> None:
        self.seconds = 0.0
        self.calls: dict[str, int] = {}
        for name in (
            "claim_due",
            "apply_steps",
            "apply_step",
            "release",
            "update",
            "get",
            "insert_many",
        ):
            self._wrap(store, name)

    def _wrap(self, store: SQLiteStore, name: str) -> None:
        inner = getattr(store, name)

        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls[name] = self.calls.get(name, 0) + 1

        setattr(store, name, timed)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    box = [0.0]
    t = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - t


def load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def reference_loop() -> float:
    """Seconds a fixed pure-Python loop takes (10M integer additions), best of 3.

    The same loop on the same Python takes 0.35 s at one hour and 1.2 s at another
    on a shared machine; printed with the results, it tells a run made while the
    CPU was busy with other work. It does not see contention for memory or disk.
    """
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - t)
    return best


def settle() -> None:
    """Start a measurement from a quiet state: no cyclic garbage of an earlier one, and
    no dirty pages of an earlier database still being written back to disk."""
    gc.collect()
    os.sync()


# -- (a) tick cost ------------------------------------------------------------------


def tick_cost(folder: Path, sizes: tuple[int, ...], trials: int) -> list[dict[str, Any]]:
    """Median tick per database size; the sizes take turns, so load on the machine
    weighs on each alike."""
    nows = [T0 + timedelta(hours=k) for k in range(trials)]
    engines: list[Engine] = []
    out: list[dict[str, Any]] = []
    for total in sizes:
        path = fresh_db(folder, f"tick-{total}.db")
        store = SQLiteStore(path)
        with stopwatch() as build:
            populate(store, total, nows)
        plan = [
            str(row[-1])
            for row in store.query("EXPLAIN QUERY PLAN " + CLAIM_DUE_SQL, ("w", 0, 0, 0, 1000))
            if "handoffs_due" in str(row[-1])
        ]
        engines.append(engine_for(store, one_step_policy()))
        out.append(
            {
                "open": total,
                "build_s": build[0],
                "path": path,
                "plan": "; ".join(plan),
                "checks": [],
                "delivers": [],
            }
        )
    settle()
    for now in nows:
        for engine, r in zip(engines, out, strict=True):
            t = time.perf_counter()
            checked = engine.check(now)
            t1 = time.perf_counter()
            delivered = engine.deliver(now)
            t2 = time.perf_counter()
            assert checked.count == 1000, checked.count
            assert delivered.sent == 1000, delivered
            r["checks"].append(t1 - t)
            r["delivers"].append(t2 - t1)
    for engine, r in zip(engines, out, strict=True):
        engine.close()  # checkpoints the WAL into the file
        r["size_mb"] = r.pop("path").stat().st_size / 1e6
        r["check_s"] = statistics.median(r["checks"])
        r["deliver_s"] = statistics.median(r["delivers"])
        r["tick_s"] = statistics.median(
            c + d for c, d in zip(r["checks"], r["delivers"], strict=True)
        )
    for p in folder.glob("tick-*.db*"):
        p.unlink()
    return out


# -- (b) steps per second -----------------------------------------------------------


def records(n: int, prefix: str = "h") -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i:07d}",
            "owner": f"owner{i % 50}",
            "backup_owner": f"backup{i % 20}",
            "started_at": T0,
            "channel": "web",
        }
        for i in range(n)
    ]


def started(folder: Path, name: str, n: int) -> tuple[SQLiteStore, Engine]:
    """A fresh database with ``n`` handoffs started at T0 under the playbook's policy."""
    store = SQLiteStore(fresh_db(folder, name))
    engine = engine_for(store, Policy.default(basis="wall"))
    for lo in range(0, n, 10_000):
        engine.start_many(records(min(10_000, n - lo), prefix=f"h{lo}-"))
    return store, engine


def one_step_per_claim(folder: Path, n: int, repeat: int) -> dict[str, Any]:
    """Steps/s when no handoff is behind: ``n`` handoffs, checked once when only their
    1x step is due and once more when their 2x step is, each a run on a fresh database."""
    seconds: list[float] = []
    for _run in range(repeat):
        settle()
        _store, engine = started(folder, "single.db", n)
        with stopwatch() as first:
            one = engine.check(T0 + timedelta(minutes=45))
        with stopwatch() as second:
            two = engine.check(T0 + timedelta(hours=2))
        assert one.count == two.count == n, (one, two)
        seconds.append(first[0] + second[0])
        engine.close()
    return {
        "steps": 2 * n,
        "seconds": seconds,
        "per_s": 2 * n / min(seconds),
        "median_per_s": 2 * n / statistics.median(seconds),
    }


def recorder(
    apply: Callable[[Sequence[StepApplication]], list[bool]], into: list[StepApplication]
) -> Callable[[Sequence[StepApplication]], list[bool]]:
    """``apply``, keeping a copy of every application it is given in ``into``."""

    def recording(apps: Sequence[StepApplication]) -> list[bool]:
        into.extend(apps)
        return apply(apps)

    return recording


def steps_per_second(folder: Path, n: int, repeat: int = 3) -> dict[str, Any]:
    """(b): ``repeat`` checks, each on a fresh database; the best one is the result."""
    recorded: list[StepApplication] = []
    runs: list[tuple[float, Any, StoreTimer]] = []
    now = T0 + timedelta(hours=2)
    for run in range(repeat):
        settle()
        store, engine = started(folder, "steps.db", n)
        if run == 0:
            store.apply_steps = recorder(store.apply_steps, recorded)  # type: ignore[method-assign, assignment]
        timer = StoreTimer(store)
        with stopwatch() as check:
            result = engine.check(now)
        assert result.count == 2 * n, result
        runs.append((check[0], result, timer))
        if run < repeat - 1:
            engine.close()
    seconds = [r[0] for r in runs]
    best, result, timer = min(runs, key=lambda r: r[0])
    with stopwatch() as deliver:
        delivered = engine.deliver(now)
    outbox_rows = delivered.sent
    traces = sum(len(a.traces) for a in recorded)
    engine.close()

    # The store alone: the same applications on a fresh copy of the starting data.
    replay, replay_engine = started(folder, "replay.db", n)
    with stopwatch() as store_only:
        for app in recorded:
            assert replay.apply_step(app)
    replay_engine.close()

    out = {
        "steps": result.count,
        "check_s": best,
        "checks": seconds,
        "steps_per_s": result.count / best,
        "median_per_s": result.count / statistics.median(seconds),
        "store_s": timer.seconds,
        "engine_s": best - timer.seconds,
        "calls": dict(timer.calls),
        "outbox_rows": outbox_rows,
        "trace_rows": traces,
        "deliver_per_s": outbox_rows / deliver[0],
        "replay_per_s": len(recorded) / store_only[0],
        "batched_per_s": batched(folder, n, recorded),
        "sql_per_s": statements_only(folder, n, recorded),
        "profile": profile_engine(folder, min(n, 2000)),
        "single": one_step_per_claim(folder, n, repeat),
    }
    return out


#: (label, file suffix, function) of the spots the profile reports, engine first.
HOT_SPOTS = (
    ("Engine._plan: plan one step and build its records", "engine.py", "_plan"),
    ("  run_actions: the step's actions", "policy.py", "run_actions"),
    ("    Policy.message_for: notification text", "policy.py", "message_for"),
    ("  Policy._steps_and_dues: step due times", "policy.py", "_steps_and_dues"),
    ("Handoff copies (claimed rows, step changes)", "<slakit packed Handoff>", "build"),
    ("Trace, notification, escalation records", "<slakit positional ", "build"),
    ("Handoff.to_dict: payloads (none until read)", "handoff.py", "to_dict"),
    ("SQLiteStore.claim_due", "sqlite.py", "claim_due"),
    ("  rows to Handoff values", "sqlite.py", sqlite_store._handoff_from_row.__name__),
    ("SQLiteStore.apply_steps", "sqlite.py", "apply_steps"),
    ("  statement parameters for a step", "sqlite.py", "__init__"),
    ("  SQLite executing the statements", "~", "<method 'execute"),
)


def batched(folder: Path, n: int, recorded: list[StepApplication], size: int = 500) -> float:
    """Steps/s of ``SQLiteStore.apply_steps``: the same applications, ``size`` per transaction,
    in the order the engine sent them (each handoff's steps in a row)."""
    store, engine = started(folder, "batched.db", n)
    ordered = recorded
    with stopwatch() as took:
        for lo in range(0, len(ordered), size):
            assert all(store.apply_steps(ordered[lo : lo + size]))
    engine.close()
    return len(ordered) / took[0]


def statements_only(
    folder: Path, n: int, recorded: list[StepApplication], size: int = 500
) -> float:
    """Steps/s of SQLite itself: ``apply_steps``' statements with their parameters built
    beforehand, ``size`` steps per transaction. No Python planning or row building is
    timed, so this is the ceiling any engine on this schema and machine can reach."""
    store, engine = started(folder, "statements.db", n)
    ordered = recorded
    batches = []
    for lo in range(0, len(ordered), size):
        steps = [_PreparedStep(a) for a in ordered[lo : lo + size]]
        batches.append(
            (
                # One row update per run of a handoff's steps, as the store writes it.
                [steps[j - 1].params_after(steps[i]) for i, j in _runs(steps)],
                [r for st in steps for r in st.escalations],
                [r for st in steps for r in st.outbox],
                [r for st in steps for r in st.traces],
            )
        )

    def write(conn: sqlite3.Connection, batch: tuple[list[Any], ...]) -> None:
        updates, escalations, outbox, traces = batch
        execute = conn.execute
        for params in updates:
            assert execute(_APPLY_STEP, params).rowcount == 1
        _insert_rows(conn, _INSERT_ESCALATION, escalations)
        _insert_rows(conn, _INSERT_OUTBOX, outbox)
        _insert_rows(conn, _INSERT_TRACE, traces)

    gc.collect()
    with stopwatch() as took:
        for batch in batches:
            store._write("statements", lambda conn, b=batch: write(conn, b))  # type: ignore[misc]
    engine.close()
    return len(ordered) / took[0]


def profile_engine(folder: Path, n: int) -> list[tuple[str, int, float]]:
    """cProfile of a check on ``n`` handoffs: calls and share of the check's time per spot."""
    store = SQLiteStore(fresh_db(folder, "profile.db"))
    engine = engine_for(store, Policy.default(basis="wall"))
    engine.start_many(records(n))
    prof = cProfile.Profile()
    prof.enable()
    engine.check(T0 + timedelta(hours=2))
    prof.disable()
    engine.close()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = max(v[3] for k, v in stats.items() if k[2] == "check")
    out = []
    for label, suffix, func in HOT_SPOTS:
        calls = cumulative = 0.0
        for (file, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            builtin = suffix == "~" and file == "~" and name.startswith(func)
            # Generated constructors (slakit._build) are named "<slakit ...>".
            generated = suffix.startswith("<") and file.startswith(suffix) and name == func
            if builtin or generated or (name == func and file.endswith(suffix)):
                calls += nc
                cumulative += ct
        if generated_spot(suffix) and _build.ACCELERATED:
            continue  # compiled builders: cProfile counts their time in their callers
        out.append((label, int(calls), cumulative / total))
    return out


def generated_spot(suffix: str) -> bool:
    """Whether a hot spot is a record builder of slakit._build."""
    return suffix.startswith("<slakit ")


# -- (c) bulk ingest ----------------------------------------------------------------


def ingest(folder: Path, n: int, repeat: int = 3) -> dict[str, Any]:
    """(c): ``repeat`` ingests through the engine, each into a fresh database (best one
    counts), then the store's own ceiling once."""
    batches = [records(min(10_000, n - lo), prefix=f"i{lo}-") for lo in range(0, n, 10_000)]
    seconds: list[float] = []
    for _ in range(repeat):
        settle()
        store = SQLiteStore(fresh_db(folder, "ingest.db"))
        engine = engine_for(store, Policy.default(basis="wall"))
        engine.setup()
        with stopwatch() as through_engine:
            for batch in batches:
                engine.start_many(batch)
        engine.close()
        seconds.append(through_engine[0])

    settle()
    store = SQLiteStore(fresh_db(folder, "insert.db"))
    store.setup()
    template = Handoff(
        id="t",
        policy="default",
        started_at=T0,
        owner="alice",
        sla_minutes=30.0,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        version=1,
    )
    ready = [open_handoff(template, f"r{i:07d}", T0) for i in range(n)]
    ready_traces = [start_trace(h) for h in ready]
    with stopwatch() as store_only:
        for lo in range(0, n, 10_000):
            store.insert_many(ready[lo : lo + 10_000], ready_traces[lo : lo + 10_000])
    store.close()
    return {
        "n": n,
        "engine_per_s": n / min(seconds),
        "median_per_s": n / statistics.median(seconds),
        "runs": len(seconds),
        "store_per_s": n / store_only[0],
    }


# -- output -------------------------------------------------------------------------


def markdown(
    a: list[dict[str, Any]],
    b: dict[str, Any],
    c: dict[str, Any],
    cmd: str,
    load_at_start: str,
    loops: tuple[float, float],
) -> str:
    small, large = a
    ratio = large["tick_s"] / small["tick_s"]
    lines = [
        SECTION,
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, slakit {slakit.__version__}; load average at start "
        f"{load_at_start} (a shared machine: other work ran alongside, so absolute numbers are noisy; "
        "the ratios are the point). File database, WAL, `synchronous=NORMAL`. Speed of the "
        f"machine: a pure-Python reference loop (10M integer additions, best of 3) took "
        f"{loops[0]:.2f} s before the run and {loops[1]:.2f} s after it. It sees the CPU "
        "only: other work's use of memory bandwidth and disk does not show in it, and the "
        "numbers below vary more than it does.",
        "",
        "**(a) Tick cost against open handoffs** — 1,000 due among many open; a tick is "
        "`check` (1,000 steps) plus `deliver` (1,000 notifications); median of "
        f"{len(small['checks'])}, the two databases taking turns.",
        "",
        "| open handoffs | db size | check | deliver | tick | due-claim plan |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in a:
        lines.append(
            f"| {r['open']:,} | {r['size_mb']:.0f} MB | {r['check_s'] * 1000:.0f} ms | "
            f"{r['deliver_s'] * 1000:.0f} ms | {r['tick_s'] * 1000:.0f} ms | `{r['plan']}` |"
        )
    lines += [
        "",
        f"Ratio {large['open']:,} / {small['open']:,}: **{ratio:.2f}** (target ≤ 1.3).",
        "",
        "**(b) Escalation steps per second** (one process; the engine plans every due step "
        "of each claimed handoff (the policy's actions are all built in), each on the record "
        "the one before leaves, and writes each "
        "claim batch of up to 500 handoffs in one transaction, every step all-or-nothing with "
        "its escalation, outbox and trace rows; a handoff's steps in a row are one row "
        "update):",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| steps applied by `Engine.check`, best of {len(b['checks'])} runs | "
        f"{b['steps']:,} in {b['check_s']:.2f} s = **{b['steps_per_s']:,.0f} steps/s** |",
        f"| the same, median run | {b['median_per_s']:,.0f} steps/s |",
        f"| no handoff behind: the same {b['single']['steps']:,} steps in two checks, one at "
        f"45 min (every 1x step) and one at 2 h (every 2x step), best of "
        f"{len(b['single']['seconds'])} | **{b['single']['per_s']:,.0f} steps/s** "
        f"(median {b['single']['median_per_s']:,.0f}) |",
        f"| rows written with them | {b['outbox_rows']:,} outbox, {b['trace_rows']:,} trace |",
        f"| time inside store methods (best run) | {b['store_s']:.2f} s "
        f"({b['store_s'] / b['check_s']:.0%}) |",
        f"| time in the engine itself | {b['engine_s']:.2f} s "
        f"({b['engine_s'] / b['check_s']:.0%}) |",
        f"| store alone, one transaction per step (`apply_step` replayed) | "
        f"**{b['replay_per_s']:,.0f} steps/s** |",
        f"| store alone, 500 steps per transaction (`apply_steps`) | "
        f"**{b['batched_per_s']:,.0f} steps/s** |",
        f"| SQLite alone: the same statements, parameters built beforehand | "
        f"**{b['sql_per_s']:,.0f} steps/s** |",
        f"| `Engine.deliver` | {b['deliver_per_s']:,.0f} notifications/s |",
        "",
        f"Target ≥ 20,000 steps/s (judged on the best run: on a shared machine the "
        f"others measure the neighbours too): {'met' if b['steps_per_s'] >= 20_000 else 'not met'}. "
        f"Per step, {b['store_s'] / b['steps'] * 1e6:.0f} µs go to the store and "
        f"{b['engine_s'] / b['steps'] * 1e6:.0f} µs to the engine's own Python. Of the "
        f"store's share, SQLite itself takes {1e6 / b['sql_per_s']:.0f} µs per step (one "
        "row update with its due index for each handoff's two steps, one escalation row, "
        "1.5 outbox rows and 2.5 trace rows per step with their indexes, and the WAL write "
        "at commit); the rest is Python turning "
        "records into statement parameters and rows back into records. The engine's share "
        "runs the step's actions and builds one copy of the record and its trace, "
        "notification and escalation records (one small object each, about a µs apiece).",
        "",
        "Where a check's time goes (cProfile of a check on 2,000 handoffs, 4,000 steps; "
        "cumulative time, so nested rows overlap; profiling inflates Python-heavy rows"
        + (
            "; records are built by the compiled `slakit._crecords`, whose time cProfile "
            "counts in the rows that call it):"
            if _build.ACCELERATED
            else "):"
        ),
        "",
        "| spot | calls | share of `check` |",
        "|---|---:|---:|",
        *(f"| {label.strip()} | {calls:,} | {share:.0%} |" for label, calls, share in b["profile"]),
        "",
        "**(c) Bulk ingest**:",
        "",
        "| path | starts/s |",
        "|---|---:|",
        f"| `Engine.start_many` ({c['n']:,} in batches of 10,000), best of {c['runs']} runs | "
        f"**{c['engine_per_s']:,.0f}** |",
        f"| the same, median run | {c['median_per_s']:,.0f} |",
        f"| `SQLiteStore.insert_many` of ready handoffs + start traces | {c['store_per_s']:,.0f} |",
        "",
        f"Target ≥ 50,000 starts/s through `Engine.start_many` (best run): "
        f"{'met' if c['engine_per_s'] >= 50_000 else 'not met'}; the store takes "
        f"{1e6 / c['store_per_s']:.0f} µs of the {1e6 / c['engine_per_s']:.0f} µs per start, "
        "the rest is validating and building each record, its deadlines and its start "
        "trace line.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000, help="open handoffs, large db")
    parser.add_argument("--trials", type=int, default=5, help="ticks per database in (a)")
    parser.add_argument("--steps", type=int, default=10_000, help="handoffs with 2 due steps")
    parser.add_argument("--ingest", type=int, default=50_000, help="records to start")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (b) and (c)")
    parser.add_argument("--markdown", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--dir", help="folder for the databases (default: a temporary one)")
    args = parser.parse_args(argv)
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    load_at_start = load()
    loop_before = reference_loop()
    say(f"load average {load_at_start}; reference loop {loop_before:.2f} s")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        a = tick_cost(folder, (10_000, args.open), args.trials)
        for r in a:
            say(
                f"(a) {r['open']:>9,} open: built in {r['build_s']:.1f} s "
                f"({r['size_mb']:.0f} MB); check {r['check_s'] * 1000:.0f} ms, "
                f"deliver {r['deliver_s'] * 1000:.0f} ms, tick {r['tick_s'] * 1000:.0f} ms "
                f"(ticks {', '.join(f'{c + d:.2f}' for c, d in zip(r['checks'], r['delivers'], strict=True))} s); "
                f"plan: {r['plan']}"
            )
        say(f"(a) ratio {a[1]['tick_s'] / a[0]['tick_s']:.2f}")
        b = steps_per_second(folder, args.steps, args.repeat)
        say(
            f"(b) {b['steps']:,} steps in {b['check_s']:.2f} s = {b['steps_per_s']:,.0f}/s "
            f"(runs {', '.join(f'{t:.2f}' for t in b['checks'])} s) "
            f"(store {b['store_s']:.2f} s, engine {b['engine_s']:.2f} s; calls {b['calls']}); "
            f"one step per claim {b['single']['per_s']:,.0f}/s; "
            f"store alone {b['replay_per_s']:,.0f}/s, batched {b['batched_per_s']:,.0f}/s; "
            f"deliver {b['deliver_per_s']:,.0f}/s"
        )
        for label, calls, share in b["profile"]:
            say(f"    {label:<46} {calls:>7,} calls {share:6.1%}")
        c = ingest(folder, args.ingest, args.repeat)
        say(
            f"(c) start_many {c['engine_per_s']:,.0f}/s (median {c['median_per_s']:,.0f}/s); "
            f"insert_many alone {c['store_per_s']:,.0f}/s"
        )
    loop_after = reference_loop()
    say(f"reference loop {loop_after:.2f} s")
    cmd = "python bench/engine.py" + (" --markdown" if args.markdown else "")
    for flag in ("open", "trials", "steps", "ingest", "repeat"):
        if getattr(args, flag) != parser.get_default(flag):
            cmd += f" --{flag} {getattr(args, flag)}"
    section = markdown(a, b, c, cmd, load_at_start, (loop_before, loop_after))
    print(section)
    if args.markdown:
        write_section(SECTION, section)
        say(f"wrote the {SECTION!r} section of {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
