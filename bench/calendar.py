"""BusinessCalendar.add / elapsed against pandas CustomBusinessHour and businesstimedelta.

Usage::

    python bench/calendar.py                 # 10,000 operations for slakit
    python bench/calendar.py --n 2000        # fewer
    python bench/calendar.py --markdown      # also write the "## Calendar" section
                                             # of docs/benchmarks.md

The calendar is America/New_York, Monday to Friday 09:00-17:00, US holidays.
Starts are random aware datetimes over 2026-2028 (seeded), deltas whole hours
from 1 to 40 (pandas' business-hour offset counts whole hours), elapsed spans
up to 30 days. The peers are slow, so they run on a smaller sample (--peer-n,
default 500) of the same operations. The batch API runs on 1,000,000 int64
epoch-microsecond instants.

slakit's `add`/`elapsed` run on the compiled fast path (`slakit._ccal`) when it
is built, and then the pure-Python path is timed too, in the same run;
`SLAKIT_PURE=1 python bench/calendar.py` times pure Python only. The output
says which implementation ran.
"""

import sys
from pathlib import Path

# This file is called calendar.py: drop its folder from sys.path so that
# `import calendar` anywhere below gets the standard library, not this script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import runpy  # noqa: E402

# The shared docs writer, run by path since this folder is off sys.path.
write_section = runpy.run_path(str(_HERE / "_docs.py"))["write_section"]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import slakit.calendar  # noqa: E402
from slakit.calendar import BusinessCalendar  # noqa: E402

NY = ZoneInfo("America/New_York")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
DOCS = _HERE.parent / "docs" / "benchmarks.md"
SECTION = "## Calendar"


def make_calendar() -> BusinessCalendar:
    return BusinessCalendar.from_config(
        {
            "timezone": "America/New_York",
            "hours": {d: ["09:00-17:00"] for d in WEEKDAYS},
            "holidays": {"country": "US"},
        }
    )


def workload(n: int, seed: int) -> tuple[list[datetime], list[int], list[datetime]]:
    """Random aware starts (in NY), whole-hour deltas, and ends up to 30 days later."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    span = int((datetime(2029, 1, 1, tzinfo=UTC) - t0).total_seconds())
    starts = [
        (t0 + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))).astimezone(
            NY
        )
        for _ in range(n)
    ]
    hours = [rng.randint(1, 40) for _ in range(n)]
    ends = [s + timedelta(seconds=rng.randrange(30 * 86400)) for s in starts]
    return starts, hours, ends


def per_op_median(run: Callable[[int, int], None], n: int, chunk: int, repeat: int) -> float:
    """Median over chunks (and repeats) of the time per operation, in microseconds."""
    samples = []
    for _ in range(repeat):
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            t = time.perf_counter_ns()
            run(lo, hi)
            samples.append((time.perf_counter_ns() - t) / (hi - lo) / 1000)
    return statistics.median(samples)


def bench_slakit(
    cal: BusinessCalendar,
    starts: Sequence[datetime],
    hours: Sequence[int],
    ends: Sequence[datetime],
) -> dict[str, float]:
    deltas = [timedelta(hours=h) for h in hours]
    n = len(starts)

    def add(lo: int, hi: int) -> None:
        a = cal.add
        for i in range(lo, hi):
            a(starts[i], deltas[i])

    def elapsed(lo: int, hi: int) -> None:
        e = cal.elapsed
        for i in range(lo, hi):
            e(starts[i], ends[i])

    # The first pass builds the lazy per-year table; it is timed on its own.
    cold = make_calendar()
    t = time.perf_counter()
    cold.add(starts[0], deltas[0])
    first_call = (time.perf_counter() - t) * 1e6
    add(0, n)
    elapsed(0, n)
    return {
        "add": per_op_median(add, n, 100, 5),
        "elapsed": per_op_median(elapsed, n, 100, 5),
        "first_call_us": first_call,
    }


def implementation() -> str:
    if slakit.calendar.ACCELERATED:
        return "compiled fast path (slakit._ccal)"
    if slakit.calendar._PURE_BY_ENV:
        return "pure Python (SLAKIT_PURE set)"
    return "pure Python (slakit._ccal not built)"


def bench_slakit_pure(
    starts: Sequence[datetime], hours: Sequence[int], ends: Sequence[datetime]
) -> dict[str, float]:
    """The same measurement with the compiled fast path switched off, as SLAKIT_PURE=1 does."""
    saved = slakit.calendar._add_fast, slakit.calendar._elapsed_fast
    slakit.calendar._add_fast = slakit.calendar._elapsed_fast = None
    try:
        return bench_slakit(make_calendar(), starts, hours, ends)
    finally:
        slakit.calendar._add_fast, slakit.calendar._elapsed_fast = saved


def us_holidays() -> list[date]:
    import holidays

    return sorted(holidays.country_holidays("US", years=range(2025, 2031)))


def bench_pandas(starts: Sequence[datetime], hours: Sequence[int]) -> dict[str, Any]:
    try:
        import pandas as pd
    except ImportError:
        return {}
    cbh = pd.offsets.CustomBusinessHour(start="09:00", end="17:00", holidays=us_holidays())
    stamps = [pd.Timestamp(s) for s in starts]
    offsets = [cbh * h for h in hours]

    def add(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            stamps[i] + offsets[i]

    add(0, min(50, len(stamps)))
    results = [(stamps[i] + offsets[i]).to_pydatetime() for i in range(len(stamps))]
    return {"add": per_op_median(add, len(stamps), 50, 3), "results": results}


def bench_btd(
    starts: Sequence[datetime], hours: Sequence[int], ends: Sequence[datetime]
) -> dict[str, Any]:
    try:
        import businesstimedelta as btd
        import holidays
        import pytz
    except ImportError:
        return {}
    tz = pytz.timezone("America/New_York")
    workday = btd.WorkDayRule(
        start_time=datetime.min.time().replace(hour=9),
        end_time=datetime.min.time().replace(hour=17),
        working_days=[0, 1, 2, 3, 4],
        tz=tz,
    )
    rules = btd.Rules([workday, btd.HolidayRule(holidays.country_holidays("US"), tz=tz)])
    deltas = [btd.BusinessTimeDelta(rules, hours=h) for h in hours]

    def add(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            starts[i] + deltas[i]

    def elapsed(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            rules.difference(starts[i], ends[i])

    add(0, min(20, len(starts)))
    results = [starts[i] + deltas[i] for i in range(len(starts))]
    return {
        "add": per_op_median(add, len(starts), 20, 1),
        "elapsed": per_op_median(elapsed, len(starts), 20, 1),
        "results": results,
    }


def bench_batch(cal: BusinessCalendar, n: int, seed: int) -> dict[str, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lo = (datetime(2026, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    span = 3 * 365 * 86_400 * 10**6
    starts = lo + rng.integers(0, span, n, dtype=np.int64)
    deltas = rng.integers(1, 40 * 3600, n, dtype=np.int64) * 10**6
    ends = starts + rng.integers(0, 30 * 86_400, n, dtype=np.int64) * 10**6
    cal.add_many(starts[:10], deltas[:10])  # build the table outside the timing

    def best(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t)
        return min(times) / n

    return {
        "add_many": best(lambda: cal.add_many(starts, deltas)),
        "elapsed_many": best(lambda: cal.elapsed_many(starts, ends)),
    }


def agreement(ours: Sequence[datetime], theirs: Sequence[datetime]) -> int:
    return sum(a.astimezone(UTC) != b.astimezone(UTC) for a, b in zip(ours, theirs, strict=True))


def closing_rolls(
    cal: BusinessCalendar, ours: Sequence[datetime], theirs: Sequence[datetime]
) -> int:
    """Disagreements where slakit says exactly 17:00 and the peer says the next opening."""
    count = 0
    for a, b in zip(ours, theirs, strict=True):
        if a.astimezone(UTC) == b.astimezone(UTC) or (a.hour, a.minute, a.second) != (17, 0, 0):
            continue
        if cal.next_open(a + timedelta(microseconds=1)).astimezone(UTC) == b.astimezone(UTC):
            count += 1
    return count


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="slakit operations (default 10000)")
    parser.add_argument("--peer-n", type=int, default=500, help="peer operations (default 500)")
    parser.add_argument("--batch-n", type=int, default=1_000_000, help="batch instants")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--markdown", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()

    cal = make_calendar()
    starts, hours, ends = workload(args.n, args.seed)
    ours = bench_slakit(cal, starts, hours, ends)
    pure = bench_slakit_pure(starts, hours, ends) if slakit.calendar.ACCELERATED else None
    peer_n = min(args.peer_n, args.n)
    p_starts, p_hours, p_ends = starts[:peer_n], hours[:peer_n], ends[:peer_n]
    pandas = bench_pandas(p_starts, p_hours)
    btd = bench_btd(p_starts, p_hours, p_ends)
    batch = bench_batch(cal, args.batch_n, args.seed)
    our_results = [cal.add(s, timedelta(hours=h)) for s, h in zip(p_starts, p_hours, strict=True)]

    rows = [
        ("`add` (aware datetime)", ours["add"], pandas.get("add"), btd.get("add")),
        ("`elapsed` (aware datetimes)", ours["elapsed"], None, btd.get("elapsed")),
    ]
    if pure is not None:
        rows += [
            ("`add`, pure Python", pure["add"], pandas.get("add"), btd.get("add")),
            ("`elapsed`, pure Python", pure["elapsed"], None, btd.get("elapsed")),
        ]
    lines = [
        "| operation | slakit µs/op | pandas CBH µs/op | × | businesstimedelta µs/op | × |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, mine, pd_us, btd_us in rows:
        lines.append(
            f"| {name} | {fmt(mine)} | {fmt(pd_us, 1)} | {fmt(pd_us and pd_us / mine, 0)} "
            f"| {fmt(btd_us, 1)} | {fmt(btd_us and btd_us / mine, 0)} |"
        )
    batch_lines = [
        "| batch operation (1 call over the array) | ns/op |",
        "|---|---:|",
        f"| `add_many` ({args.batch_n:,} int64 µs instants) | {batch['add_many']:.1f} |",
        f"| `elapsed_many` ({args.batch_n:,} pairs) | {batch['elapsed_many']:.1f} |",
    ]
    impl = implementation()
    notes = [
        f"slakit implementation: {impl}"
        + (
            "; the pure-Python rows are the same run with it switched off (`SLAKIT_PURE=1`)."
            if pure is not None
            else "."
        ),
        f"slakit: median per-op time over chunks of 100 of {args.n:,} seeded operations "
        "(5 passes, warm table); the first call on a fresh calendar, which builds the "
        f"table for the years around it, took {ours['first_call_us']:,.0f} µs.",
        f"Peers: the first {peer_n:,} of the same operations (they are slow); pandas has "
        "no business-time difference, so its `elapsed` is n/a.",
    ]
    if "results" in pandas:
        differ = agreement(our_results, pandas["results"])
        rolls = closing_rolls(cal, our_results, pandas["results"])
        notes.append(
            f"pandas CBH disagreed with slakit on {differ} of {peer_n} `add` results; "
            f"{rolls} of those are a deadline at exactly 17:00 that pandas moves to the "
            "next opening."
        )
    if "results" in btd:
        notes.append(
            f"businesstimedelta disagreed on {agreement(our_results, btd['results'])} "
            f"of {peer_n} `add` results."
        )
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (
        f"Python {platform.python_version()} on {platform.system()} {cpu}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start of the run."
    )

    print(f"slakit implementation: {impl}")
    print()
    print("\n".join(lines))
    print()
    print("\n".join(batch_lines))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- {machine}")

    if args.markdown:
        command = "python bench/calendar.py --markdown" + (
            f" --n {args.n}" if args.n != 10_000 else ""
        )
        section = "\n".join(
            [
                SECTION,
                "",
                "`BusinessCalendar` on America/New_York, Mon–Fri 09:00–17:00, US holidays; "
                "random aware starts over 2026–2028, whole-hour deltas of 1–40 h, "
                "elapsed spans up to 30 days.",
                "",
                *lines,
                "",
                *batch_lines,
                "",
                *(f"- {note}" for note in notes),
                f"- {machine}",
                "",
                f"Command: `{command}`",
                "",
            ]
        )
        write_section(SECTION, section)
        print(f"\nwrote the {SECTION!r} section of {DOCS.relative_to(_HERE.parent)}")


if __name__ == "__main__":
    main()
