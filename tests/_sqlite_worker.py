"""A checker process for the SQLite concurrency tests.

Run as ``python _sqlite_worker.py --db DB --now ISO --log SENT_LOG``: it checks
and delivers until there is nothing left it can claim, then prints a JSON
summary. Every delivered notification is appended to ``SENT_LOG`` as one line
``idempotency_key<TAB>notifier<TAB>pid``.

``SLAKIT_TEST_FAULT`` makes the process kill itself with SIGKILL the
``SLAKIT_TEST_FAULT_AT``-th time it reaches a fault point:

* ``before-commit``: inside ``apply_step``, just before ``COMMIT`` runs;
* ``after-commit``: right after ``apply_step`` committed, before any send;
* ``before-send``: a claimed outbox row, before the notifier sends it;
* ``after-send-before-ack``: the notification was sent, its outcome not recorded.

Before dying it writes what it was doing to ``--fault-log``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from slakit import Engine, ManualClock, Notifier, Policy
from slakit.adapters.sqlite import SQLiteStore
from slakit.records import Notification, StepApplication

FAULTS = ("before-commit", "after-commit", "before-send", "after-send-before-ack")


def _append(path: str, line: str) -> None:
    # One O_APPEND write per line keeps lines from several processes whole.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Fault:
    """Counts visits to one fault point and kills the process on the chosen one."""

    def __init__(self, name: str | None, at: int, log: str | None) -> None:
        self.name = name
        self.at = at
        self.log = log
        self.seen = 0

    def hit(self, point: str) -> bool:
        """Whether this visit to ``point`` is the one that dies."""
        if point != self.name:
            return False
        self.seen += 1
        return self.seen == self.at

    def die(self, what: str) -> None:
        if self.log:
            _append(self.log, f"{self.name}\t{what}\n")
        os.kill(os.getpid(), signal.SIGKILL)


class FileNotifier(Notifier):
    """Appends each notification to a log file shared by all processes."""

    def __init__(self, path: str, fault: Fault | None = None, name: str = "file") -> None:
        self.name = name
        self.path = path
        self.fault = fault or Fault(None, 0, None)

    def send(self, notification: Notification) -> None:
        key = notification.idempotency_key
        if self.fault.hit("before-send"):
            self.fault.die(key)
        _append(self.path, f"{key}\t{notification.notifier}\t{os.getpid()}\n")
        if self.fault.hit("after-send-before-ack"):
            self.fault.die(key)


class FaultyStore(SQLiteStore):
    """A SQLite store that can die inside or right after a step's transaction."""

    def __init__(self, path: str, fault: Fault) -> None:
        super().__init__(path)
        self.fault = fault
        self._dying: str | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.set_trace_callback(self._statement)
        return conn

    def _statement(self, sql: str) -> None:
        if self._dying is not None and sql.strip().upper() == "COMMIT":
            self.fault.die(self._dying)

    def apply_step(self, application: StepApplication) -> bool:
        return self.apply_steps([application])[0]

    def apply_steps(self, applications: Sequence[StepApplication]) -> list[bool]:
        # A faulty worker claims one handoff at a time (see build_engine), so
        # each transaction here holds that handoff's due steps, in order, and
        # "the Nth transaction" is exact.
        what = " ".join(f"{a.handoff.id}:{a.expected_stage}" for a in applications)
        if self.fault.hit("before-commit"):
            self._dying = what
        done = super().apply_steps(applications)
        if any(done) and self.fault.hit("after-commit"):
            self.fault.die(what)
        return done


def build_engine(db: str, now: datetime, log: str, fault: Fault, worker: str) -> Engine:
    """The engine every test process runs: default wall policy, file notifier."""
    store = FaultyStore(db, fault) if fault.name else SQLiteStore(db)
    return Engine(
        store=store,
        policies=[Policy.default(basis="wall")],
        notifiers=[FileNotifier(log, fault)],
        clock=ManualClock(now),
        worker_id=worker,
        batch_size=1 if fault.name else 100,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--worker", default=f"w{os.getpid()}")
    parser.add_argument("--fault-log")
    parser.add_argument("--ready", help="file to create once set up")
    parser.add_argument("--go", help="file to wait for before starting")
    args = parser.parse_args(argv)
    fault_name = os.environ.get("SLAKIT_TEST_FAULT") or None
    if fault_name is not None and fault_name not in FAULTS:
        raise SystemExit(f"unknown SLAKIT_TEST_FAULT {fault_name!r}")
    fault = Fault(fault_name, int(os.environ.get("SLAKIT_TEST_FAULT_AT", "1")), args.fault_log)
    now = datetime.fromisoformat(args.now)
    engine = build_engine(args.db, now, args.log, fault, args.worker)
    engine.setup()
    if args.ready:
        Path(args.ready).touch()
    if args.go:
        deadline = time.monotonic() + 60
        while not os.path.exists(args.go):
            if time.monotonic() > deadline:
                raise SystemExit("never told to go")
            time.sleep(0.005)
    totals = {"applied": 0, "lost": 0, "errors": 0, "sent": 0, "retried": 0, "delivery_lost": 0}
    while True:
        checked = engine.check(now)
        delivered = engine.deliver(now)
        totals["applied"] += checked.count
        totals["lost"] += checked.lost
        totals["errors"] += len(checked.errors)
        totals["sent"] += delivered.sent
        totals["retried"] += delivered.retried
        totals["delivery_lost"] += delivered.lost
        if not (checked.applied or checked.lost or delivered.sent or delivered.lost):
            break
    engine.close()
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
