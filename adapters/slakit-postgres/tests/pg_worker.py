"""A checker process for the multi-process tests: ``python pg_worker.py '<json>'``.

It loops ``check`` + ``deliver`` on the real clock until the stop file exists,
then writes a JSON report. Keys it delivers are appended to ``sends_path``.
With ``fault`` set it kills itself with SIGKILL at one of three points, on the
``fault_after``-th time it gets there:

* ``before_commit``: inside the step's transaction, after its statement ran
  (row lock held, nothing committed);
* ``after_commit``: in the notifier, before sending (the step is committed and
  the outbox row leased to this worker);
* ``after_send``: in the notifier, after the send is recorded, before the
  outbox row is marked sent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import slakit
from slakit.records import Notification, StepApplication
from slakit_postgres import PostgresStore

NOTIFIER = "rec"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultyStore(PostgresStore):
    """Kills the process inside the transaction of the ``fault_after``-th step, before commit.

    Engines that write steps one by one go through :meth:`apply_step`, those
    that batch them through :meth:`apply_steps`; both are covered.
    """

    def __init__(self, *args: Any, fault_after: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fault_after = fault_after
        self.calls = 0

    def apply_step(self, application: StepApplication) -> bool:
        self.calls += 1
        if self.calls < self.fault_after:
            return super().apply_step(application)
        with self._connection() as conn, conn.transaction():
            self._apply_step(conn, application)
            _die()
        raise AssertionError("unreachable")

    def apply_steps(self, applications: Sequence[StepApplication]) -> list[bool]:
        if len(applications) < 2 or self.calls + len(applications) < self.fault_after:
            self.calls += len(applications) if len(applications) >= 2 else 0
            return super().apply_steps(applications)
        with self._connection() as conn, conn.transaction():
            self._apply_batch(conn, applications)
            _die()
        raise AssertionError("unreachable")


class RecordingNotifier(slakit.Notifier):
    """Appends each idempotency key to a file; may die before or after "sending"."""

    name = NOTIFIER

    def __init__(self, out: TextIO, fault: str, fault_after: int, flush: bool) -> None:
        self.out = out
        self.fault = fault
        self.fault_after = fault_after
        self.flush = flush
        self.calls = 0

    def send(self, notification: Notification) -> None:
        self.calls += 1
        hit = self.calls >= self.fault_after
        if hit and self.fault == "after_commit":
            _die()
        self.out.write(notification.idempotency_key + "\n")
        if self.flush or (hit and self.fault == "after_send"):
            self.out.flush()
            os.fsync(self.out.fileno())
        if hit and self.fault == "after_send":
            _die()


def main(config: dict[str, Any]) -> None:
    fault = config.get("fault", "none")
    fault_after = int(config.get("fault_after", 1))
    store_kw = {"schema": config["schema"], "application_name": f"pg_worker {config['name']}"}
    store: PostgresStore
    if fault == "before_commit":
        store = FaultyStore(config["dsn"], fault_after=fault_after, **store_kw)
    else:
        store = PostgresStore(config["dsn"], **store_kw)
    with open(config["sends_path"], "a", encoding="utf-8") as out:
        notifier = RecordingNotifier(out, fault, fault_after, bool(config.get("flush", True)))
        engine = slakit.Engine(
            store,
            policies=[slakit.Policy.default(basis="wall")],
            notifiers=[notifier],
            worker_id=config["name"],
            batch_size=int(config.get("batch_size", 500)),
            claim_lease=float(config.get("claim_lease", 60)),
            outbox_lease=float(config.get("outbox_lease", 120)),
        )
        applied: list[tuple[str, int]] = []
        stats = {"sent": 0, "lost_steps": 0, "lost_sends": 0, "ticks": 0}
        started = time.monotonic()
        with engine:
            while not os.path.exists(config["stop_path"]):
                check = engine.check()
                delivery = engine.deliver()
                applied.extend((a.handoff_id, a.stage) for a in check.applied)
                stats["sent"] += delivery.sent
                stats["lost_steps"] += check.lost
                stats["lost_sends"] += delivery.lost
                stats["ticks"] += 1
                if not check.applied and not delivery.sent and not delivery.lost:
                    time.sleep(0.05)
        out.flush()
    report = {
        "name": config["name"],
        "applied": applied,
        "seconds": time.monotonic() - started,
        **stats,
    }
    with open(config["report_path"], "w", encoding="utf-8") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
