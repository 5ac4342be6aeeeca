"""Instructions per step and per start on SQLite, counted by valgrind (callgrind).

Usage::

    python bench/instructions.py              # about three minutes
    python bench/instructions.py --markdown   # also write its section of docs/benchmarks.md

Timings on a shared machine move by ±30% from run to run, too much to see a
change of a few percent. An instruction count does not move: the same code
on the same Python and SQLite executes the same instructions whatever else
the machine is doing, so this is the figure to compare before and after a
change to the hot path (it does not see cache misses or I/O waits, so it
complements ``bench/engine.py`` rather than replacing it).

Three child processes run under ``valgrind --tool=callgrind``, each with the
bench's data from ``bench/engine.py``: *bare* (imports, an empty database),
*started* (plus ``Engine.start_many`` of ``--handoffs`` records) and *checked*
(plus ``Engine.check`` applying both steps of the playbook's policy to each,
with every escalation, outbox and trace row). Per start is
(started - bare) / handoffs; per step is (checked - started) / steps. The
three run twice: with the compiled modules, and in pure Python (``SLAKIT_PURE=1``).
Without valgrind the script says so and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Scripts in this folder shadow standard modules (bench/calendar.py): drop the
# folder from sys.path so that `import calendar` anywhere gets the standard library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import runpy  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from datetime import timedelta  # noqa: E402

import slakit  # noqa: E402

ROOT = _HERE.parent
SECTION = "## Instructions per step (callgrind)"
write_section = runpy.run_path(str(_HERE / "_docs.py"))["write_section"]
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(stage: str, n: int) -> None:
    """What one counted process does: ``bare``, ``started`` or ``checked``."""
    engine_bench = runpy.run_path(str(_HERE / "engine.py"), run_name="bench_engine")
    with tempfile.TemporaryDirectory() as tmp:
        # The bench's own data: n handoffs under the playbook's policy (none when bare).
        _, engine = engine_bench["started"](Path(tmp), "count.db", 0 if stage == "bare" else n)
        engine.setup()
        gc.collect()
        if stage == "checked":
            result = engine.check(engine_bench["T0"] + timedelta(hours=2))
            assert result.count == 2 * n, result
        engine.close()


def count(valgrind: str, stage: str, n: int, pure: bool = False) -> int:
    """Instructions a child process executes, start to exit (``pure``: SLAKIT_PURE=1)."""
    cmd = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={os.devnull}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        stage,
        "--handoffs",
        str(n),
    ]
    env = {k: v for k, v in os.environ.items() if k != "SLAKIT_PURE"}
    if pure:
        env["SLAKIT_PURE"] = "1"
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def markdown(n: int, compiled: tuple[float, float], pure: tuple[float, float], cmd: str) -> str:
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{cmd}`",
            "",
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"slakit {slakit.__version__}, valgrind's instruction count (the same on a busy "
            "or a quiet machine, within 0.1% from run to run; no cache misses or I/O waits "
            f"in it). {n:,} handoffs started, then {2 * n:,} steps applied as in (b) of "
            "the engine section. *Compiled*: with the optional C modules `slakit._crecords` "
            "(record builders, row codec, UTC microsecond conversions) and `slakit._ccal` (calendar), "
            "as installed with a C compiler; *pure Python*: the same code with "
            "`SLAKIT_PURE=1`, as installed without one.",
            "",
            "| measure | compiled | pure Python |",
            "|---|---:|---:|",
            f"| one start through `Engine.start_many` | {compiled[0]:,.0f} | {pure[0]:,.0f} |",
            f"| one step applied by `Engine.check`, with its rows | {compiled[1]:,.0f} "
            f"| {pure[1]:,.0f} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=1000, help="records to start and step")
    parser.add_argument("--markdown", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--child", choices=("bare", "started", "checked"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.handoffs)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: no instruction counts (apt-get install valgrind)")
        return 0
    n = args.handoffs
    results = []
    for pure in (False, True):
        bare, started, checked = (
            count(valgrind, s, n, pure) for s in ("bare", "started", "checked")
        )
        per_start, per_step = (started - bare) / n, (checked - started) / (2 * n)
        print(
            f"{'pure Python' if pure else 'compiled'}: per start {per_start:,.0f} instructions; "
            f"per step {per_step:,.0f} instructions"
        )
        results.append((per_start, per_step))
    cmd = "python bench/instructions.py" + (" --markdown" if args.markdown else "")
    if n != 1000:
        cmd += f" --handoffs {n}"
    section = markdown(n, results[0], results[1], cmd)
    print(section)
    if args.markdown:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
