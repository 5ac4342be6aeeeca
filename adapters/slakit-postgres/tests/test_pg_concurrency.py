"""Many checker processes on one database: every step once, every notification delivered.

These spawn real processes (``pg_worker.py``) and kill some of them with
SIGKILL at the points where a crash could lose or double work.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import slakit
from slakit_postgres import PostgresStore

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("heavy"),
]

WORKER = Path(__file__).with_name("pg_worker.py")


class Fleet:
    """Worker processes sharing one schema, their send logs and reports."""

    def __init__(self, dsn: str, schema: str, tmp: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.tmp = tmp
        self.stop_path = tmp / "stop"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self.runs = 0

    def spawn(self, name: str, **options: Any) -> subprocess.Popen[bytes]:
        self.runs += 1
        run = f"{name}.{self.runs}"
        config = {
            "dsn": self.dsn,
            "schema": self.schema,
            "name": name,
            "sends_path": str(self.tmp / f"sends.{run}"),
            "report_path": str(self.tmp / f"report.{run}.json"),
            "stop_path": str(self.stop_path),
            **options,
        }
        log = (self.tmp / f"stderr.{run}").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)], stdout=log, stderr=log
        )
        self.procs[run] = proc
        self.logs[proc.pid] = self.tmp / f"stderr.{run}"
        return proc

    def said(self, proc: subprocess.Popen[bytes]) -> str:
        """What a worker wrote to stdout and stderr (for failure messages)."""
        return self.logs[proc.pid].read_text(errors="replace")[-4000:]

    def query(self, q: str) -> tuple[Any, ...]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            row = conn.execute(q.encode()).fetchone()
        assert row is not None
        return tuple(row)

    def progress(self) -> tuple[int, int]:
        """(escalation rows, sent outbox rows)."""
        esc, sent = self.query(
            "SELECT (SELECT count(*) FROM escalations),"
            " (SELECT count(*) FROM outbox WHERE state = 'sent')"
        )
        return int(esc), int(sent)

    def wait_until_done(self, n: int, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.progress() == (n, n):
                return time.monotonic() - started
            dead = [r for r, p in self.procs.items() if p.poll() not in (None, -signal.SIGKILL)]
            assert not dead, f"worker {dead[0]} failed:\n{self.stderr(dead[0])}"
            time.sleep(0.5)
        raise AssertionError(f"not done after {timeout}s: progress {self.progress()} of {n}")

    def stderr(self, run: str) -> str:
        return (self.tmp / f"stderr.{run}").read_text(errors="replace")[-3000:]

    def stop(self) -> list[dict[str, Any]]:
        self.stop_path.touch()
        reports = []
        for run, proc in self.procs.items():
            if proc.poll() is None:
                proc.wait(60)
            if proc.returncode == 0:
                reports.append(json.loads((self.tmp / f"report.{run}.json").read_text()))
            else:
                assert proc.returncode == -signal.SIGKILL, self.stderr(run)
        return reports

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def sends(self) -> collections.Counter[str]:
        keys: collections.Counter[str] = collections.Counter()
        for path in self.tmp.glob("sends.*"):
            keys.update(line for line in path.read_text().splitlines() if line)
        return keys


@pytest.fixture
def fleet(
    pg_dsn: str, fresh_schema: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[Fleet, PostgresStore]]:
    schema = fresh_schema()
    store = PostgresStore(pg_dsn, schema=schema)
    store.setup()
    f = Fleet(pg_dsn, schema, tmp_path)
    try:
        yield f, store
    finally:
        f.kill_all()
        store.close()


def _start_due(store: PostgresStore, n: int) -> set[str]:
    """n handoffs whose 1x step is due now (and 2x not yet), by the database's clock."""
    db_now = store.database_now()
    engine = slakit.Engine(store, policies=[slakit.Policy.default(basis="wall")])
    started = db_now - timedelta(minutes=45)
    ids = [f"h{i:06d}" for i in range(n)]
    for chunk in range(0, n, 20_000):
        engine.start_many(
            {"id": hid, "owner": "alice", "started_at": started}
            for hid in ids[chunk : chunk + 20_000]
        )
    return {f"{hid}:0:notify:owner:alice" for hid in ids}


def _check_all_done(fleet: Fleet, store: PostgresStore, keys: set[str]) -> None:
    n = len(keys)
    esc, distinct = fleet.query(
        "SELECT count(*), count(DISTINCT (handoff_id, stage)) FROM escalations"
    )
    assert (esc, distinct) == (n, n)
    assert fleet.query("SELECT count(*) FROM handoffs WHERE stage <> 1") == (0,)
    rows, sent, distinct_keys = fleet.query(
        "SELECT count(*), count(*) FILTER (WHERE state = 'sent'),"
        " count(DISTINCT (notifier, idempotency_key)) FROM outbox"
    )
    assert (rows, sent, distinct_keys) == (n, n, n)
    assert fleet.query("SELECT count(*) FROM handoffs WHERE next_due_at <= now()") == (0,)
    assert store.claim_due(store.database_now(), 10, "probe", 1) == []


class TestManyWorkers:
    def test_eight_workers_apply_100k_steps_exactly_once(
        self, fleet: tuple[Fleet, PostgresStore]
    ) -> None:
        """8 processes, 100,000 due steps: each (handoff, stage) and each key exactly once."""
        f, store = fleet
        n = 100_000
        t0 = time.monotonic()
        keys = _start_due(store, n)
        setup = time.monotonic() - t0
        for i in range(8):
            f.spawn(f"w{i}", flush=False)
        elapsed = f.wait_until_done(n, timeout=600)
        reports = f.stop()
        print(f"\n100k steps: setup {setup:.1f}s, 8 workers applied+delivered in {elapsed:.1f}s")
        assert len(reports) == 8
        applied = [tuple(a) for r in reports for a in r["applied"]]
        assert len(applied) == n
        assert len(set(applied)) == n
        assert sum(r["sent"] for r in reports) == n
        sends = f.sends()
        assert set(sends) == keys
        assert max(sends.values()) == 1
        _check_all_done(f, store, keys)


FAULTS = ["before_commit", "after_commit", "after_send"]


class TestCrashedWorker:
    @pytest.mark.parametrize("fault", FAULTS)
    def test_sigkill_loses_nothing(self, fleet: tuple[Fleet, PostgresStore], fault: str) -> None:
        """A worker killed at a fault point loses nothing once others and its restart carry on.

        Only a kill between a send and its record may deliver one key twice.
        """
        f, store = fleet
        n = 600
        keys = _start_due(store, n)
        leases = {"claim_lease": 2, "outbox_lease": 4, "batch_size": 50}
        victim = f.spawn("w0", fault=fault, fault_after=40, **leases)
        victim.wait(60)
        assert victim.returncode == -signal.SIGKILL, (
            f"the fault point was never reached; the worker said:\n{f.said(victim)}"
        )
        for i in (1, 2):
            f.spawn(f"w{i}", **leases)
        f.spawn("w0", **leases)  # the restart
        f.wait_until_done(n, timeout=120)
        reports = f.stop()
        applied = [tuple(a) for r in reports for a in r["applied"]]
        assert len(applied) == len(set(applied))
        sends = f.sends()
        assert set(sends) == keys
        twice = [k for k, c in sends.items() if c > 1]
        if fault == "after_send":
            assert len(twice) == 1  # the one sent but not recorded: at-least-once
        else:
            assert twice == []
        assert max(sends.values()) <= 2
        _check_all_done(f, store, keys)
