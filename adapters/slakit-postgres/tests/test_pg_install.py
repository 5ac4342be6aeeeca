"""Installing the distribution is what makes ``adapter = "postgres"`` work.

A real, empty virtual environment (no system or parent site-packages) gets
wheels of slakit and then of slakit-postgres, built here without network
access. Their dependencies are not downloaded either: a ``.pth`` file points
at a folder linking exactly the installed dependency distributions (attrs,
pluggy, psycopg…), so neither slakit nor slakit-postgres leaks in from the
development environment.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("heavy")]

ADAPTER = Path(__file__).resolve().parents[1]
REPO = ADAPTER.parents[1]
OURS = {"slakit", "slakit-postgres"}


def _dependency_closure(roots: set[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``roots`` need at run time, roots excluded.

    Extras asked for by a requirement (``psycopg[binary]``) are followed.
    """

    def needs(dist: md.Distribution, extras: set[str]) -> list[Requirement]:
        out = []
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                out.append(req)
        return out

    found: dict[str, md.Distribution] = {}
    todo = [req for root in roots for req in needs(md.distribution(root), set())]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in OURS or key in found:
            continue
        found[key] = md.distribution(req.name)
        todo.extend(needs(found[key], set(req.extras)))
    return found


def _link_dependencies(target: Path) -> None:
    target.mkdir()
    for dist in _dependency_closure(OURS).values():
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(t for t in tops if t not in ("..", "__pycache__")):
            link = target / top
            if not link.exists():
                link.symlink_to(base / top)


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv holding slakit and its dependencies only, wheel folder)."""
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    for source in (REPO, ADAPTER):
        _run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--wheel-dir",
            wheels,
            source,
        )
    _run(sys.executable, "-m", "venv", "--without-pip", tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    _link_dependencies(tmp / "deps")
    (Path(site.as_posix().strip()) / "_test_dependencies.pth").write_text(f"{tmp / 'deps'}\n")
    _install(python, next(wheels.glob("slakit-*.whl")))
    return python, wheels


def _install(python: Path, wheel: Path) -> None:
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )


SCRIPT = textwrap.dedent(
    """
    import sys
    import slakit
    config = {
        "store": {"adapter": "postgres", "dsn": sys.argv[1], "schema": sys.argv[2]},
        "policies": {"p": {"basis": "wall"}},
    }
    try:
        engine = slakit.Engine.from_config(config)
    except slakit.SlakitError as exc:
        print(type(exc).__name__)
        print(exc)
    else:
        with engine:
            engine.start("lead-1", owner="alice")
            print(type(engine.store).__name__, engine.store.count())
    """
)


class TestInstall:
    def test_adapter_exists_only_when_installed(
        self, venv: tuple[Path, Path], pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """Without the distribution 'postgres' is unknown (one line); installed, it works."""
        python, wheels = venv
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "SLAKIT_DISABLE_PLUGIN_AUTOLOAD")
        }
        schema = fresh_schema()
        probe = "import importlib.util as u; print(u.find_spec('slakit_postgres') is None)"
        assert _run(python, "-c", probe, env=env).strip() == "True"
        out = _run(python, "-c", SCRIPT, pg_dsn, schema, env=env).splitlines()
        assert out == [
            "UnknownAdapterError",
            "no store adapter named 'postgres'; installed: memory, sqlite",
        ]

        _install(python, next(wheels.glob("slakit_postgres-*.whl")))
        out = _run(python, "-c", SCRIPT, pg_dsn, schema, env=env).splitlines()
        assert out == ["PostgresStore 1"]
