"""Developer tasks. Plain `nox` runs tests, lint and typecheck."""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = "3.11"
ADAPTERS = sorted(p for p in glob.glob("adapters/*") if os.path.isfile(f"{p}/pyproject.toml"))


def _install_all(session: nox.Session, *extras: str) -> None:
    session.install("-e", ".[test]")
    for adapter in ADAPTERS:
        session.install("-e", f"{adapter}[test]")
    if extras:
        session.install(*extras)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite: core and every adapter, against the real local services."""
    _install_all(session)
    test_dirs = ["tests", *[f"{a}/tests" for a in ADAPTERS if os.path.isdir(f"{a}/tests")]]
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", *test_dirs]
    session.run(
        "pytest", *args, env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    )


@nox.session(python=["3.12", "3.13"])
def compat(session: nox.Session) -> None:
    """The same suite on the newer Pythons slakit supports (not part of plain `nox`)."""
    tests(session)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the adapters."""
    _install_all(session, "mypy>=1.10", "types-python-dateutil")
    session.run("mypy", "--strict", "src/slakit")
    for adapter in ADAPTERS:
        pkg = glob.glob(f"{adapter}/src/*")
        if pkg:
            session.run("mypy", "--strict", *pkg)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers; results go to docs/benchmarks.md with --markdown."""
    _install_all(session, "pandas", "businesstimedelta", "numpy", "rich")
    for script in sorted(glob.glob("bench/*.py")):
        if os.path.basename(script).startswith("_"):
            continue
        session.run("python", script, *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Check the docs: every hook and public name documented, examples runnable."""
    _install_all(session)
    session.run("pytest", "tests/test_docs.py", *session.posargs)
