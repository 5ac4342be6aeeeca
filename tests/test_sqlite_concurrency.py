"""The SQLite store across processes: many checkers at once, and checkers killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slakit import Engine, ManualClock, Policy
from slakit.adapters.memory import MemoryStore
from slakit.adapters.sqlite import SQLiteStore

WORKER = Path(__file__).with_name("_sqlite_worker.py")
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
# Both default steps (1x at 30 min, 2x at 60 min) are due.
CHECK_AT = T0 + timedelta(hours=2)
# Past every claim and outbox lease a killed checker left behind.
RESTART_AT = CHECK_AT + timedelta(minutes=10)


def _records(count: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"h{i:05d}",
            "owner": f"owner{i % 7}",
            "backup_owner": f"backup{i % 5}",
            "started_at": T0,
        }
        for i in range(count)
    ]


def _expected(records: list[dict[str, object]]) -> tuple[set[tuple[str, int]], set[str]]:
    """Escalations and outbox keys of the default policy: 1x notifies the owner;
    2x swaps owner and backup, then notifies the new owner and the old one."""
    escalations: set[tuple[str, int]] = set()
    keys: set[str] = set()
    for r in records:
        hid, owner, backup = r["id"], r["owner"], r["backup_owner"]
        escalations |= {(str(hid), 0), (str(hid), 1)}
        keys |= {
            f"{hid}:0:notify:owner:{owner}",
            f"{hid}:1:notify:owner:{backup}",
            f"{hid}:1:notify:backup:{owner}",
        }
    return escalations, keys


class _Null:
    name = "file"

    def send(self, notification: object) -> None:
        pass

    def close(self) -> None:
        pass


def _seed(db: Path, count: int) -> list[dict[str, object]]:
    records = _records(count)
    engine = Engine(
        store=SQLiteStore(db),
        policies=[Policy.default(basis="wall")],
        clock=ManualClock(T0),
        notifiers=[_Null()],  # type: ignore[list-item]
    )
    with engine:
        assert engine.start_many(records) == count
    return records


def _worker(
    db: Path,
    log: Path,
    now: datetime,
    *,
    name: str,
    fault: str | None = None,
    fault_at: int = 1,
    fault_log: Path | None = None,
    ready: Path | None = None,
    go: Path | None = None,
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAKIT_TEST_FAULT")}
    if fault is not None:
        env["SLAKIT_TEST_FAULT"] = fault
        env["SLAKIT_TEST_FAULT_AT"] = str(fault_at)
    args = [
        sys.executable,
        str(WORKER),
        "--db",
        str(db),
        "--now",
        now.isoformat(),
        "--log",
        str(log),
        "--worker",
        name,
    ]
    if fault_log is not None:
        args += ["--fault-log", str(fault_log)]
    if ready is not None:
        args += ["--ready", str(ready)]
    if go is not None:
        args += ["--go", str(go)]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _sent(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split("\t")[0] for line in log.read_text().splitlines() if line)


def _state(db: Path) -> tuple[list[tuple[str, int]], list[tuple[str, str, str]], str]:
    conn = sqlite3.connect(db)
    try:
        escalations = conn.execute("SELECT handoff_id, stage FROM escalations").fetchall()
        outbox = conn.execute("SELECT notifier, idempotency_key, state FROM outbox").fetchall()
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return escalations, outbox, integrity


class TestExpectedKeys:
    def test_formula_matches_the_engine(self) -> None:
        """The expected escalations and outbox keys are what an engine really writes."""
        records = _records(12)
        store = MemoryStore()
        engine = Engine(
            store=store,
            policies=[Policy.default(basis="wall")],
            clock=ManualClock(T0),
            notifiers=[_Null()],  # type: ignore[list-item]
        )
        engine.start_many(records)
        engine.check(CHECK_AT)
        escalations, keys = _expected(records)
        assert {(e.handoff_id, e.stage) for e in store.escalations()} == escalations
        assert {i.notification.idempotency_key for i in store.outbox()} == keys


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
class TestManyCheckerProcesses:
    def test_eight_processes_apply_every_step_and_send_every_notification_once(
        self, tmp_path: Path
    ) -> None:
        """8 processes checking and delivering 20,000 due steps apply each
        (handoff, stage) once and send each outbox key once."""
        db, log = tmp_path / "slakit.db", tmp_path / "sent.log"
        records = _seed(db, 10_000)
        go = tmp_path / "go"
        procs = [
            _worker(db, log, CHECK_AT, name=f"w{i}", ready=tmp_path / f"ready{i}", go=go)
            for i in range(8)
        ]
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(8)):
            assert time.monotonic() < deadline, "workers never got ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = [_finish(p) for p in procs]
        for code, _out, err in results:
            assert code == 0, err
        totals = [json.loads(out) for _code, out, _err in results]

        escalations, keys = _expected(records)
        rows, outbox, integrity = _state(db)
        assert integrity == "ok"
        assert len(rows) == 20_000
        assert set(rows) == escalations
        assert sum(t["applied"] for t in totals) == 20_000
        assert sum(t["errors"] for t in totals) == 0
        assert sorted(k for _n, k, _s in outbox) == sorted(keys)
        assert {s for _n, _k, s in outbox} == {"sent"}
        sent = _sent(log)
        assert set(sent) == keys
        assert max(sent.values()) == 1
        assert sum(t["sent"] for t in totals) == len(keys)
        # The work really was shared.
        assert sum(1 for t in totals if t["applied"]) >= 2


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
class TestKilledChecker:
    @pytest.mark.parametrize(
        ("fault", "duplicates"),
        [
            ("before-commit", False),
            ("after-commit", False),
            ("before-send", False),
            ("after-send-before-ack", True),
        ],
    )
    def test_restart_loses_nothing(self, tmp_path: Path, fault: str, duplicates: bool) -> None:
        """A checker killed with SIGKILL at a fault point loses no step or notification
        on restart; only a kill between a send and its record repeats that one key."""
        db, log, fault_log = tmp_path / "slakit.db", tmp_path / "sent.log", tmp_path / "fault"
        records = _seed(db, 40)
        killed = _worker(
            db, log, CHECK_AT, name="doomed", fault=fault, fault_at=5, fault_log=fault_log
        )
        code, _out, err = _finish(killed)
        assert code == -signal.SIGKILL, err
        point, what = fault_log.read_text().strip().split("\t")
        assert point == fault

        rows_before, outbox_before, _ = _state(db)
        if fault in ("before-commit", "after-commit"):
            # One handoff per transaction, with both of its due steps, in order.
            steps = [(h, int(s)) for h, s in (w.rsplit(":", 1) for w in what.split())]
            assert [s for _h, s in steps] == [0, 1]
            assert len({h for h, _s in steps}) == 1
        if fault == "before-commit":
            # The steps being committed are not there; the four handoffs' before them are.
            assert not set(steps) & set(rows_before)
            assert len(rows_before) == 8
        if fault == "after-commit":
            assert set(steps) <= set(rows_before)
            assert len(rows_before) == 10
        if fault in ("before-send", "after-send-before-ack"):
            # The row being delivered is still pending: its outcome was never recorded.
            assert ("file", what, "pending") in set(outbox_before)
            assert _sent(log)[what] == (1 if duplicates else 0)

        code, _out, err = _finish(_worker(db, log, RESTART_AT, name="restarted"))
        assert code == 0, err

        escalations, keys = _expected(records)
        rows, outbox, integrity = _state(db)
        assert integrity == "ok"
        assert len(rows) == len(escalations)
        assert set(rows) == escalations
        assert sorted(k for _n, k, _s in outbox) == sorted(keys)
        assert {s for _n, _k, s in outbox} == {"sent"}
        sent = _sent(log)
        assert set(sent) == keys
        repeated = {k for k, n in sent.items() if n > 1}
        if duplicates:
            assert repeated == {what}
            assert sent[what] == 2
        else:
            assert repeated == set()
