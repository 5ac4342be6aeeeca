"""Hit rate over many SQLite handoffs: the SQL aggregate against the one-pass Python path.

Usage::

    python bench/report.py                   # 1,000,000 handoffs
    python bench/report.py --rows 200000     # fewer
    python bench/report.py --markdown        # also write the section of docs/benchmarks.md

The data set is synthetic: starts spread over 26 weeks, three channels, four
segments, two policies; 60 % answered (some late), 10 % cancelled, 5 % paused,
the rest open. It is written once per run through ``SQLiteStore.insert_many``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import runpy
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import slakit
from slakit.adapters.sqlite import SQLiteStore
from slakit.handoff import Handoff
from slakit.metrics import hit_rate

# The shared docs writer, run by path (the folder holds a calendar.py that must not
# shadow the standard library's, so it is not importable as a package).
write_section = runpy.run_path(str(Path(__file__).resolve().parent / "_docs.py"))["write_section"]

T0 = datetime(2026, 1, 5, tzinfo=UTC)
NOW = T0 + timedelta(weeks=26)
CHANNELS = ("web", "phone", "chat")
# The index --covering-index adds: window column first, then every column the aggregate reads.
COVERING = (
    "started_at, cancelled_at, stopped_at, paused_at, wall_deadline_at, "
    "business_deadline_at, policy, channel, segment, owner, within_business_hours"
)
SEGMENTS = ("smb", "mid", "ent", None)


def make(i: int, rng: random.Random) -> Handoff:
    start = T0 + timedelta(seconds=rng.randrange(0, 26 * 7 * 86400))
    sla = timedelta(minutes=30)
    wall = start + sla
    # A rough business deadline: later than the wall one for out-of-hours starts.
    business = wall if 9 <= start.hour < 17 else wall + timedelta(hours=14)
    fate = rng.random()
    kw: dict[str, Any] = {}
    if fate < 0.6:
        stop = start + timedelta(minutes=rng.expovariate(1 / 25))
        kw.update(first_response_at=stop, stopped_at=stop)
    elif fate < 0.7:
        kw["cancelled_at"] = start + timedelta(minutes=5)
    elif fate < 0.75:
        kw["paused_at"] = start + timedelta(minutes=3)
    return Handoff(
        id=f"h{i:07d}",
        policy="lead" if i % 3 else "ticket",
        started_at=start,
        owner=f"owner{i % 40}",
        sla_minutes=30.0,
        channel=CHANNELS[i % 3],
        segment=SEGMENTS[i % 4],
        within_business_hours=9 <= start.hour < 17,
        deadline_at=business,
        wall_deadline_at=wall,
        business_deadline_at=business,
        attributes={"region": ("eu", "us")[i % 2]},
        version=1,
        **kw,
    )


def populate(store: SQLiteStore, rows: int, batch: int = 50_000) -> float:
    rng = random.Random(20261123)
    t = time.perf_counter()
    for lo in range(0, rows, batch):
        store.insert_many([make(i, rng) for i in range(lo, min(rows, lo + batch))])
    return time.perf_counter() - t


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def calibrate() -> float:
    """Seconds for a plain 10M-step Python loop: how fast this machine is right now."""
    t = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    return time.perf_counter() - t


def _load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a docs section")
    parser.add_argument("--skip-python", action="store_true", help="skip the slow Python paths")
    parser.add_argument(
        "--covering-index",
        action="store_true",
        help="also time the SQL cases with a covering report index (a proposal for the store)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        store.setup()
        load_s = populate(store, args.rows)
        results: list[tuple[str, str, float, str]] = []

        def case(label: str, path: str, fn: Callable[[], Any], repeat: int) -> None:
            secs, rep = timed(fn, repeat)
            assert rep.computed_by == path, (label, rep.computed_by)
            total = rep.total.handoffs
            results.append((label, path, secs, f"{total:,} handoffs, {len(rep.groups)} groups"))
            print(f"{label:<48} {path:<7} {secs:8.3f} s  {total:,}", file=sys.stderr)

        def store_cases(suffix: str = "") -> None:
            case(
                f"all, no grouping{suffix}", "store", lambda: hit_rate(store, now=NOW), args.repeat
            )
            case(
                f"all, by channel, segment{suffix}",
                "store",
                lambda: hit_rate(store, by=("channel", "segment"), now=NOW),
                args.repeat,
            )
            case(
                f"one week window, by policy{suffix}",
                "store",
                lambda: hit_rate(
                    store,
                    since=T0 + timedelta(weeks=10),
                    until=T0 + timedelta(weeks=11),
                    by="policy",
                    now=NOW,
                ),
                args.repeat,
            )
            case(
                f"all, by attributes.region (json_extract){suffix}",
                "store",
                lambda: hit_rate(store, by="attributes.region", now=NOW),
                args.repeat,
            )

        store_cases()
        if not args.skip_python:
            case(
                "all, by attributes.region, Python over the store's rows",
                "python",
                lambda: hit_rate(store.iter_handoffs(), by="attributes.region", now=NOW),
                1,
            )
            handoffs = list(store.iter_handoffs())
            case(
                "all, by channel, in-memory list (Python pass)",
                "python",
                lambda: hit_rate(handoffs, by="channel", now=NOW),
                args.repeat,
            )
        if args.covering_index:
            conn = sqlite3.connect(Path(tmp) / "bench.db")
            conn.execute(f"CREATE INDEX bench_report ON handoffs ({COVERING})")
            conn.close()
            store_cases(" (covering index)")
        store.close()

    if args.markdown:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            print("## Reports")
            print()
            print(
                f"`slakit.hit_rate` over {args.rows:,} handoffs in SQLite "
                f"(SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
                f"slakit {slakit.__version__}, 2 cores). Best of {args.repeat} runs; the "
                "Python path over store rows runs once. Loading the rows took "
                f"{load_s:.0f} s. Target: 1M handoffs in at most 1 s on SQLite."
            )
            print()
            flags = " --covering-index" if args.covering_index else ""
            print(f"Command: `python bench/report.py --markdown{flags}`")
            print()
            print("| case | computed by | seconds | result |")
            print("|---|---|---:|---|")
            for label, path, secs, note in results:
                print(f"| {label} | {path} | {secs:.3f} | {note} |")
            print()
            ok = [label for label, path, secs, _ in results if path == "store" and secs <= 1.0]
            slow = [label for label, path, secs, _ in results if path == "store" and secs > 1.0]
            ok, slow = [f"*{x}*" for x in ok], [f"*{x}*" for x in slow]
            print(
                f"Within the 1 s target on the SQL path: {', '.join(ok) or 'none'}; "
                f"over it: {', '.join(slow) or 'none'}. Machine speed for scale: a "
                f"10-million-step Python loop took {calibrate():.2f} s during this run, and "
                f"the load average was {_load()}."
            )
        print(buf.getvalue(), end="")
        write_section("## Reports", buf.getvalue())

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
