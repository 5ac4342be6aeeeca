"""The engine on the PostgreSQL store: steps/s with 1, 2 and 4 worker processes; tick cost.

Usage::

    python bench/postgres.py                  # everything (a few minutes)
    python bench/postgres.py --open 200000    # a smaller "large" table
    python bench/postgres.py --markdown       # also write the "## PostgreSQL"
                                              # section of docs/benchmarks.md

Needs a PostgreSQL server: ``--dsn``, else ``$SLAKIT_BENCH_PG_DSN``, else
``host=127.0.0.1 port=5432 dbname=test``. Everything happens in throwaway
schemas that are dropped at the end.

(a) **Steps per second with 1, 2 and 4 worker processes.** ``--steps``
    handoffs (default 20,000) whose ``1x`` step (notify the owner) is due by
    the database's clock. The workers start together and call
    ``Engine.check`` until nothing is left to claim: each step writes its
    handoff, escalation, outbox and trace rows all-or-nothing (a claimed
    batch shares one transaction, see ``apply_steps``). Then, again
    together, ``Engine.deliver`` until the outbox is empty (a notifier that
    does nothing). Reported: steps/s and deliveries/s, each over the wall time
    from the start signal to the last worker's finish.
(b) **Tick cost against table size.** Two schemas, one with 10,000 open
    handoffs and one with ``--open`` (default 1,000,000), built with one
    ``INSERT … SELECT generate_series`` each. Five times in each (alternating,
    so load on the machine hits both alike), 1,000 handoffs that are due are
    added and one tick (``Engine.check`` + ``Engine.deliver``) applies and
    delivers them. Reported: median tick of each and the ratio large / small.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Scripts in this folder shadow standard modules (bench/calendar.py): drop the
# folder from sys.path so that `import calendar` anywhere gets the standard library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import runpy  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402

import slakit  # noqa: E402
from slakit.records import Notification  # noqa: E402
from slakit_postgres import PostgresStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
# The shared docs writer, run by path since this folder is off sys.path.
write_section = runpy.run_path(str(_HERE / "_docs.py"))["write_section"]
SECTION = "## PostgreSQL"
DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test"


class NullNotifier(slakit.Notifier):
    """Delivers nowhere, so the outbox path is measured, not a network."""

    name = "null"

    def send(self, notification: Notification) -> None:
        return None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def engine_for(store: PostgresStore, name: str = "bench") -> slakit.Engine:
    return slakit.Engine(
        store,
        policies=[slakit.Policy.default(basis="wall")],
        notifiers=[NullNotifier()],
        worker_id=name,
    )


def start_due(store: PostgresStore, n: int, prefix: str) -> None:
    """``n`` handoffs whose 1x step is due (and 2x not yet) by the database's clock."""
    started = store.database_now() - timedelta(minutes=45)
    engine = engine_for(store)
    for lo in range(0, n, 10_000):
        engine.start_many(
            {"id": f"{prefix}{i:07d}", "owner": "alice", "started_at": started}
            for i in range(lo, min(n, lo + 10_000))
        )


def drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


# -- (a) steps per second ---------------------------------------------------


def worker(config: dict[str, Any]) -> None:
    """One worker process: wait for "go", check until empty, wait, deliver until empty."""
    store = PostgresStore(config["dsn"], schema=config["schema"])
    engine = engine_for(store, config["name"])
    engine.setup()
    out: dict[str, Any] = {"steps": 0, "sent": 0}
    for phase, go in (("check", config["go_check"]), ("deliver", config["go_deliver"])):
        while not os.path.exists(go):
            time.sleep(0.005)
        while True:
            if phase == "check":
                c = engine.check()
                out["steps"] += c.count
                if not c.applied and not c.lost:
                    break
            else:
                d = engine.deliver()
                out["sent"] += d.sent
                if not d.sent and not d.lost and not d.retried:
                    break
        out[f"{phase}_done"] = time.time()
        Path(config[f"done_{phase}"]).touch()
    engine.close()
    print(json.dumps(out))


def steps_per_second(dsn: str, n: int, workers: int) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(dsn, schema=schema)
    store.setup()
    try:
        start_due(store, n, "s")
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            procs = []
            for i in range(workers):
                config = {
                    "dsn": dsn,
                    "schema": schema,
                    "name": f"w{i}",
                    "go_check": str(t / "go_check"),
                    "go_deliver": str(t / "go_deliver"),
                    "done_check": str(t / f"check.{i}"),
                    "done_deliver": str(t / f"deliver.{i}"),
                }
                procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--worker", json.dumps(config)],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            time.sleep(1.0 + 0.5 * workers)  # let every worker import and connect
            go = time.time()
            (t / "go_check").touch()
            while len(list(t.glob("check.*"))) < workers:
                time.sleep(0.01)
            checked = time.time()
            (t / "go_deliver").touch()
            results = [json.loads(p.communicate()[0]) for p in procs]
        steps = sum(r["steps"] for r in results)
        sent = sum(r["sent"] for r in results)
        check_s = max(r["check_done"] for r in results) - go
        deliver_s = max(r["deliver_done"] for r in results) - checked
        assert steps == n, f"applied {steps} of {n}"
        assert sent == n, f"delivered {sent} of {n}"
        return {
            "workers": workers,
            "steps": steps,
            "check_s": check_s,
            "steps_per_s": steps / check_s,
            "deliver_s": deliver_s,
            "sent_per_s": sent / deliver_s,
        }
    finally:
        store.close()
        drop(dsn, schema)


# -- (b) tick cost --------------------------------------------------------------

_FILL = """
INSERT INTO handoffs (id, policy, started_at, owner, backup_owner, sla_minutes, trace_id,
    within_business_hours, stage, next_due_at, deadline_at, wall_deadline_at,
    business_deadline_at, ingested_at, attributes, version)
SELECT 'open' || lpad(i::text, 8, '0'), 'default', t, 'alice', NULL, 30,
    md5(i::text), true, 0, t + interval '30 minutes', t + interval '30 minutes',
    t + interval '30 minutes', t + interval '30 minutes', t, '{}'::jsonb, 1
FROM generate_series(1, %(n)s) AS i, (SELECT now() + interval '1 hour' AS t) AS s
"""


def build_open(dsn: str, total: int) -> tuple[PostgresStore, float]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(dsn, schema=schema)
    store.setup()
    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"'.encode())
        conn.execute(_FILL.encode(), {"n": total})
        conn.execute(b"VACUUM ANALYZE handoffs")
    return store, time.perf_counter() - began


def claim_plan(store: PostgresStore) -> str:
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"'.encode())
        rows = conn.execute(
            b"EXPLAIN SELECT id FROM handoffs WHERE next_due_at <= now() "
            b"ORDER BY next_due_at LIMIT 500 FOR UPDATE SKIP LOCKED"
        ).fetchall()
    plan = " ".join(r[0] for r in rows)
    match = re.search(r"Index Scan using (\w+)", plan)
    return f"index scan on {match.group(1)}" if match else plan


def tick_cost(dsn: str, large: int, reps: int = 5) -> dict[str, Any]:
    sizes = {"small": 10_000, "large": large}
    stores: dict[str, PostgresStore] = {}
    out: dict[str, Any] = {"reps": reps}
    try:
        for key, total in sizes.items():
            stores[key], build_s = build_open(dsn, total - 1_000)
            out[f"{key}_open"] = total
            out[f"{key}_build_s"] = build_s
            say(f"(b) built {total - 1_000:,} open rows in {build_s:.1f} s")
        ticks: dict[str, list[tuple[float, float]]] = {k: [] for k in sizes}
        for rep in range(reps):
            for key, store in stores.items():
                start_due(store, 1_000, f"due{rep}-")
                engine = engine_for(store)
                t0 = time.perf_counter()
                c = engine.check()
                t1 = time.perf_counter()
                d = engine.deliver()
                t2 = time.perf_counter()
                assert c.count == 1_000, c.count
                assert d.sent == 1_000, d.sent
                ticks[key].append((t1 - t0, t2 - t1))
                say(f"(b) {key} rep {rep}: check {t1 - t0:.3f} s, deliver {t2 - t1:.3f} s")
        for key in sizes:
            out[f"{key}_check_s"] = statistics.median(c for c, _ in ticks[key])
            out[f"{key}_deliver_s"] = statistics.median(d for _, d in ticks[key])
            out[f"{key}_tick_s"] = statistics.median(c + d for c, d in ticks[key])
            out[f"{key}_plan"] = claim_plan(stores[key])
        out["ratio"] = out["large_tick_s"] / out["small_tick_s"]
        return out
    finally:
        for store in stores.values():
            store.close()
            drop(dsn, store.schema)


# -- report ---------------------------------------------------------------------


def markdown(a: list[dict[str, Any]], b: dict[str, Any], env: dict[str, str], cmd: str) -> str:
    lines = [
        SECTION,
        "",
        f"`PostgresStore` on PostgreSQL {env['server']} on the same machine (Python "
        f"{env['python']}, {env['cpus']} cores, load average {env['load']} at the start). "
        "Policy: the playbook's default (wall clock, 30 min); one step per handoff "
        "(`1x`: notify the owner), a notifier that does nothing.",
        "",
        f"Command: `{cmd}`",
        "",
        f"(a) {a[0]['steps']:,} due steps, worker processes started together "
        "(`Engine.check` until nothing is claimable, then `Engine.deliver` until the "
        "outbox is empty):",
        "",
        "| workers | steps/s | deliveries/s |",
        "|---:|---:|---:|",
    ]
    for r in a:
        lines.append(f"| {r['workers']} | {r['steps_per_s']:,.0f} | {r['sent_per_s']:,.0f} |")
    lines += [
        "",
        f"(b) Tick (`check` + `deliver`) with 1,000 due, median of {b['reps']}:",
        "",
        "| open handoffs | check ms | deliver ms | tick ms | due claim plan |",
        "|---:|---:|---:|---:|---|",
    ]
    for key in ("small", "large"):
        lines.append(
            f"| {b[f'{key}_open']:,} | {b[f'{key}_check_s'] * 1000:,.0f} "
            f"| {b[f'{key}_deliver_s'] * 1000:,.0f} | {b[f'{key}_tick_s'] * 1000:,.0f} "
            f"| {b[f'{key}_plan']} |"
        )
    lines += [
        "",
        f"Ratio large / small: **{b['ratio']:.2f}** (target ≤ 1.3). Building "
        f"{b['large_open']:,} rows took {b['large_build_s']:.0f} s.",
        "",
        "Notes: `Engine.check` hands each claimed batch to `PostgresStore.apply_steps`, "
        "which pipelines the batch's step statements (one per step: compare-and-set, "
        "escalation, outbox and trace rows) in one transaction, with generic plans: each "
        "statement is planned once per connection, not once per step (planning every step "
        "held one worker to 3,028-3,632 steps/s). Each delivery is its own fenced "
        "transaction and waits for its commit to reach the disk. Both cores are shared by the workers and the server, so more "
        "than two workers add contention, not throughput. Numbers from a shared machine "
        "vary by ±30% from run to run.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("SLAKIT_BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--steps", type=int, default=20_000, help="due handoffs for (a)")
    parser.add_argument("--open", type=int, default=1_000_000, help="open handoffs, large (b)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts for (a)")
    parser.add_argument("--markdown", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    with psycopg.connect(args.dsn) as conn:
        server = str(conn.execute(b"SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    env = {
        "server": server,
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "load": load(),
    }
    say(f"PostgreSQL {server}, load average {env['load']}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    a = []
    for w in (int(x) for x in args.workers.split(",")):
        r = steps_per_second(args.dsn, args.steps, w)
        say(
            f"(a) {w} workers: {r['steps']:,} steps in {r['check_s']:.1f} s = "
            f"{r['steps_per_s']:,.0f}/s; deliver {r['sent_per_s']:,.0f}/s (load {load()})"
        )
        a.append(r)
    b = tick_cost(args.dsn, args.open)
    say(
        f"(b) tick {b['small_tick_s'] * 1000:.0f} ms at {b['small_open']:,} open, "
        f"{b['large_tick_s'] * 1000:.0f} ms at {b['large_open']:,}: ratio {b['ratio']:.2f}"
    )
    if args.markdown:
        cmd = "python " + " ".join(["bench/postgres.py", *(argv or sys.argv[1:])])
        write_section(SECTION, markdown(a, b, env, cmd))
        say(f"wrote {SECTION} to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
