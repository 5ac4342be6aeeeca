"""The plugin system: built-ins, entry-point plugins in a real venv, loud failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import slakit
from slakit.abc import Notifier
from slakit.errors import ConfigError, UnknownAdapterError, ValidationError
from slakit.plugins import PluginError, Plugins, get_plugin_manager
from slakit.testing import capture_notifications


def _engine_with_actions(
    policies: dict[str, Any], store: Any = None, **actions: Callable[[Any, str | None], None]
) -> slakit.Engine:
    """An engine for ``policies`` with ``actions`` registered by a plugin; the plugin is
    unregistered again once the engine has read them."""

    class Actions:
        @slakit.hookimpl
        def slakit_register_actions(self, register: Any) -> None:
            for name, action in actions.items():
                register(name, action)

    pm = get_plugin_manager(autoload=False)
    pm.register(Actions(), name="undo-test-actions")
    try:
        return slakit.Engine.from_config(
            {"policies": policies},
            plugins=Plugins(pm),
            clock=slakit.ManualClock(slakit.ManualClock().now()),
            **({} if store is None else {"store": store}),
        )
    finally:
        pm.unregister(name="undo-test-actions")


class TestBuiltins:
    def test_builtins_register_through_the_hooks(self) -> None:
        """The built-in adapters come from the same hooks as external plugins."""
        plugins = Plugins(get_plugin_manager(autoload=False))
        assert {"memory", "sqlite"} <= set(plugins.stores())
        assert "console" in plugins.notifiers()
        assert {"jsonl", "logging"} <= set(plugins.trace_sinks())
        assert [name for name, _ in plugins.pm.list_name_plugin()] == ["slakit.builtin"]

    def test_unknown_adapter_lists_installed(self) -> None:
        """An unknown adapter name gives one line listing what is installed."""
        plugins = Plugins(get_plugin_manager(autoload=False))
        with pytest.raises(UnknownAdapterError) as info:
            plugins.make_store("postgresql")
        assert str(info.value).startswith("no store adapter named 'postgresql'; installed: ")
        assert "memory, sqlite" in str(info.value)
        assert "\n" not in str(info.value)

    def test_misspelled_hook_fails_loudly(self) -> None:
        """A hook implementation that matches no spec raises PluginError naming it."""

        class Typo:
            @slakit.hookimpl
            def slakit_register_notifer(self, register: Any) -> None:  # sic
                pass

        pm = get_plugin_manager(autoload=False)
        pm.register(Typo(), name="undo-typo")
        try:
            with pytest.raises(Exception, match="slakit_register_notifer"):
                pm.check_pending()
            # Registered after get_plugin_manager(), as the plugin testing recipe does.
            with pytest.raises(PluginError, match="slakit_register_notifer"):
                Plugins(pm)
        finally:
            pm.unregister(name="undo-typo")
        Plugins(pm)  # the manager itself is fine again

    def test_name_registered_twice_is_an_error(self) -> None:
        """Two plugins registering the same adapter name is an error, not a silent override."""

        class Dup:
            @slakit.hookimpl
            def slakit_register_stores(self, register: Any) -> None:
                register("memory", dict)

        pm = get_plugin_manager(autoload=False)
        pm.register(Dup(), name="undo-dup")
        try:
            with pytest.raises(PluginError, match="'memory' is registered twice"):
                Plugins(pm).stores()
        finally:
            pm.unregister(name="undo-dup")

    def test_plugin_action_is_usable_in_a_policy(self) -> None:
        """An action registered by a plugin runs in a step and can change the record."""

        def escalate(ctx: Any, arg: str | None) -> None:
            ctx.evolve(segment=f"escalated-{arg}")
            ctx.notify("pager")

        engine = _engine_with_actions(
            {"p": {"basis": "wall", "steps": [{"at": "1x", "do": ["page:ops"]}]}},
            page=escalate,
        )
        h = engine.start("L1", owner="a")
        with capture_notifications() as sent:
            assert h.deadline_at is not None
            engine.check(h.deadline_at)
            engine.deliver(h.deadline_at)
        assert engine.get("L1").segment == "escalated-ops"
        assert [n.recipient for n in sent] == ["pager"]

    def test_a_failing_plugin_action_stops_only_its_handoff(self) -> None:
        """An action that raises is reported in the check's errors; the other handoffs'
        steps are applied, and the failing one is left as it was."""

        def boom(ctx: Any, arg: str | None) -> None:
            if ctx.handoff.id == "bad":
                raise RuntimeError("blew up")

        engine = _engine_with_actions(
            {"p": {"basis": "wall", "steps": [{"at": "1x", "do": ["boom"]}]}}, boom=boom
        )
        bad, good = engine.start("bad", owner="a"), engine.start("good", owner="a")
        assert bad.deadline_at is not None
        result = engine.check(bad.deadline_at)
        assert [a.handoff_id for a in result.applied] == ["good"]
        assert result.errors == ("bad: RuntimeError: blew up",)
        assert engine.get("bad") == bad
        assert engine.get("good").stage == 1
        assert good.stage == 0

    def test_a_later_due_step_that_fails_leaves_the_earlier_one_written(self) -> None:
        """Both steps are due and the second one's action raises: the first is
        written, and the error is reported once, by the round that claims it again."""

        def boom(ctx: Any, arg: str | None) -> None:
            raise RuntimeError("blew up")

        steps = [{"at": "1x", "do": ["notify:owner"]}, {"at": "2x", "do": ["boom"]}]
        engine = _engine_with_actions({"p": {"basis": "wall", "steps": steps}}, boom=boom)
        h = engine.start("h", owner="a")
        assert h.deadline_at is not None
        result = engine.check(h.deadline_at + timedelta(hours=1))
        assert [(a.handoff_id, a.stage) for a in result.applied] == [("h", 0)]
        assert result.errors == ("h: RuntimeError: blew up",)
        assert engine.get("h").stage == 1

    @staticmethod
    def _catch_up_engine(tmp_path: Path, name: str, policies: dict[str, Any]) -> slakit.Engine:
        """An engine on a SQLite file with the actions switch:POLICY, bad and tag."""
        from slakit.adapters.sqlite import SQLiteStore

        return _engine_with_actions(
            policies,
            store=SQLiteStore(tmp_path / f"{name}.db"),
            switch=lambda ctx, arg: ctx.evolve(policy=arg),
            bad=lambda ctx, arg: ctx.evolve(attributes={"x": {1, 2}}),
            tag=lambda ctx, arg: ctx.evolve(attributes={"seen": (arg,)}),
        )

    def test_a_step_after_a_plugin_action_is_planned_on_the_stored_record(
        self, tmp_path: Path
    ) -> None:
        """Catching up, the step after a plugin action is planned on the record as the
        store reads it back, under the policy that record names, as in a later check."""
        p1 = {
            "basis": "wall",
            "steps": [
                {"at": "1x", "do": ["tag:1x"]},
                {"at": "2x", "do": ["switch:p2"]},
                {"at": "3x", "do": ["notify:owner"]},
            ],
        }
        p2 = {
            "basis": "wall",
            "steps": [
                {"at": "1x", "do": ["notify:owner"]},
                {"at": "2x", "do": ["notify:owner"], "message": "{sla_minutes} {attributes}"},
                {"at": "3x", "do": ["reassign:backup", "notify:owner"]},
            ],
        }
        texts = []
        for name, times in (("together", [4]), ("apart", [2, 4])):
            engine = self._catch_up_engine(tmp_path, name, {"p1": p1, "p2": p2})
            h = engine.start("h", policy="p1", owner="a", backup_owner="b", sla_minutes=60)
            with capture_notifications() as sent:
                for t in times:
                    engine.check(h.started_at + timedelta(hours=t))
                engine.deliver(h.started_at + timedelta(hours=5))
            assert engine.get("h").owner == "b"  # p2's 3x step ran, not p1's
            assert [e.actions for e in engine.store.escalations("h")][2] == (
                "reassign:backup",
                "notify:owner",
            )
            texts.append([n.text for n in sent])
            engine.close()
        assert texts[0] == texts[1]

    def test_a_later_step_the_store_refuses_holds_back_only_itself(self, tmp_path: Path) -> None:
        """The 2x step's plugin action leaves a record the store refuses: every
        handoff's 1x step is still written before the check reports the error."""
        policy = {
            "basis": "wall",
            "steps": [{"at": "1x", "do": ["notify:owner"]}, {"at": "2x", "do": ["bad"]}],
        }
        engine = self._catch_up_engine(tmp_path, "refused", {"p": policy})
        hs = [engine.start(f"h{i}", owner="a") for i in range(3)]
        with pytest.raises(ValidationError, match="attributes"):
            engine.check(hs[0].started_at + timedelta(hours=3))
        assert [engine.get(h.id).stage for h in hs] == [1, 1, 1]
        assert len(engine.store.escalations()) == 3
        engine.close()

    @pytest.mark.parametrize("made", [None, 42])
    def test_a_factory_that_gives_no_adapter_is_a_config_error(self, made: Any) -> None:
        """A store factory returning None would leave the engine on a memory store."""

        class Junk:
            @slakit.hookimpl
            def slakit_register_stores(self, register: Any) -> None:
                register("junkstore", lambda **kw: made)

            @slakit.hookimpl
            def slakit_register_notifiers(self, register: Any) -> None:
                register("junknote", lambda **kw: made)

        pm = get_plugin_manager(autoload=False)
        pm.register(Junk(), name="undo-junk")
        try:
            for config, field in (
                ({"store": {"adapter": "junkstore"}}, "store.adapter"),
                ({"notifiers": [{"adapter": "junknote"}]}, "notifier.adapter"),
            ):
                with pytest.raises(ConfigError, match="gave") as err:
                    slakit.Engine.from_config(
                        {**config, "policies": {"p": {}}}, plugins=Plugins(pm)
                    )
                assert err.value.field == field
        finally:
            pm.unregister(name="undo-junk")

    def test_a_constructor_type_error_is_explained(self) -> None:
        """A missing option is named as missing; an unknown one as not accepted; a wrong
        type the adapter trips over is shown as its own error, without blaming every key."""

        class Strict(Notifier):
            def __init__(self, url: str, *, retries: int = 1) -> None:
                self.name = "strict"
                self.url = url
                self.retries = retries + 0

            def send(self, notification: Any) -> None:
                pass

        class Plugin:
            @slakit.hookimpl
            def slakit_register_notifiers(self, register: Any) -> None:
                register("strict", Strict)

        pm = get_plugin_manager(autoload=False)
        pm.register(Plugin(), name="undo-strict")
        try:
            for options, message in (
                ({"retries": 2}, "notifier adapter 'strict' needs option(s) 'url'"),
                ({"url": "x", "colour": 1}, "does not accept these options (colour, url)"),
                ({"url": "x", "retries": "2"}, "'strict' cannot use its options: can only"),
            ):
                with pytest.raises(ConfigError) as err:
                    slakit.Engine.from_config(
                        {"notifiers": [{"adapter": "strict", **options}], "policies": {"p": {}}},
                        plugins=Plugins(pm),
                    )
                assert message in str(err.value)
        finally:
            pm.unregister(name="undo-strict")

    def test_autoload_can_be_disabled_by_environment(self, monkeypatch: Any) -> None:
        """SLAKIT_DISABLE_PLUGIN_AUTOLOAD keeps entry-point plugins out."""
        monkeypatch.setenv("SLAKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        pm = get_plugin_manager()
        assert [name for name, _ in pm.list_name_plugin()] == ["slakit.builtin"]


PLUGIN_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "0.0.1"

[project.entry-points.slakit]
{ep} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

GOOD_PLUGIN = """
import json, os
import slakit
from slakit.abc import Notifier


class FileNotifier(Notifier):
    def __init__(self, path):
        self.path = path

    def send(self, notification):
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"to": notification.recipient,
                                 "key": notification.idempotency_key}) + "\\n")


@slakit.hookimpl
def slakit_register_notifiers(register):
    register("throwaway", FileNotifier)
"""

BAD_PLUGIN = """
import slakit

@slakit.hookimpl
def slakit_register_notifer(register):  # misspelled on purpose
    pass
"""

RUN_ENGINE = """
import json, sys
from datetime import datetime, timedelta, timezone
import slakit
t0 = datetime(2026, 3, 2, 14, tzinfo=timezone.utc)
try:
    engine = slakit.Engine.from_config(
        {"policies": {"p": {"basis": "wall"}},
         "notifiers": [{"adapter": "throwaway", "path": sys.argv[1]}]},
        clock=slakit.ManualClock(t0))
except slakit.SlakitError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(0)
engine.start("L1", owner="alice")
engine.check(t0 + timedelta(minutes=30))
print(json.dumps({"delivered": engine.deliver(t0 + timedelta(minutes=30)).sent}))
"""


def _site_packages() -> list[str]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if os.path.isdir(p))


@pytest.mark.slow
class TestEntryPointPlugin:
    @pytest.fixture
    def env(self, tmp_path: Path) -> dict[str, Path]:
        """A fresh venv that sees this environment's packages (slakit, pip, hatchling)."""
        root = tmp_path / "plugin-venv"
        venv.create(root / "venv", with_pip=False)
        py = root / "venv" / "bin" / "python"
        site_dir = subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
        lines = [f"import site; site.addsitedir({p!r})" for p in _site_packages()]
        Path(site_dir, "_slakit_parent_env.pth").write_text("\n".join(lines) + "\n")
        return {"root": root, "python": py}

    def _install(self, env: dict[str, Path], dist: str, ep: str, module: str, code: str) -> None:
        src = env["root"] / dist
        (src / module).mkdir(parents=True)
        (src / "pyproject.toml").write_text(
            PLUGIN_PYPROJECT.format(dist=dist, ep=ep, module=module)
        )
        (src / module / "__init__.py").write_text(textwrap.dedent(code))
        subprocess.run(
            [
                str(env["python"]),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                str(src),
            ],
            check=True,
            capture_output=True,
        )

    def _run(self, python: Path | str, out: Path) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k != "SLAKIT_DISABLE_PLUGIN_AUTOLOAD"}
        proc = subprocess.run(
            [str(python), "-c", RUN_ENGINE, str(out)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def test_installed_plugin_is_found_by_name_and_typos_fail(
        self, env: dict[str, Path], tmp_path: Path
    ) -> None:
        """A plugin installed in a venv is found by Engine.from_config; a typo'd hook fails."""
        out = tmp_path / "sent.jsonl"
        missing = self._run(sys.executable, out)
        assert missing["error"] == "UnknownAdapterError"
        assert "no notifier adapter named 'throwaway'" in missing["message"]

        self._install(env, "slakit-throwaway", "throwaway", "slakit_throwaway", GOOD_PLUGIN)
        assert self._run(env["python"], out) == {"delivered": 1}
        assert json.loads(out.read_text()) == {"to": "alice", "key": "L1:0:notify:owner:alice"}

        self._install(env, "slakit-typo", "typo", "slakit_typo", BAD_PLUGIN)
        broken = self._run(env["python"], out)
        assert broken["error"] == "PluginError"
        assert "slakit_register_notifer" in broken["message"]


class TestImportIsLight:
    def test_import_slakit_loads_no_database_or_http_client(self) -> None:
        """`import slakit` imports no database driver, HTTP client or calendar data."""
        code = "import sys, slakit, json; print(json.dumps(sorted(m for m in sys.modules)))"
        out = subprocess.check_output([sys.executable, "-c", code], text=True)
        loaded = set(json.loads(out))
        forbidden = {
            "sqlite3",
            "_sqlite3",
            "psycopg",
            "psycopg2",
            "httpx",
            "requests",
            "urllib3",
            "http.client",
            "slack_sdk",
            "smtplib",
            "aiosmtpd",
            "opentelemetry",
            "numpy",
            "pandas",
        }
        assert loaded & forbidden == set()

    def test_public_submodules_load_on_first_use(self) -> None:
        """`slakit.metrics.classify` after a bare `import slakit` works, as the docs write
        it, and so does `slakit.testing.notifiers`; private or missing names do not."""
        code = (
            "import slakit, slakit.testing\n"
            "assert callable(slakit.metrics.classify)\n"
            "assert slakit.calendar.BusinessCalendar is slakit.BusinessCalendar\n"
            "assert callable(slakit.testing.notifiers.sample_notification)\n"
            "for mod, name in ((slakit, 'nope'), (slakit, '__main__'), (slakit.testing, 'nope')):\n"
            "    assert not hasattr(mod, name), name\n"
            "print('ok')\n"
        )
        out = subprocess.check_output([sys.executable, "-c", code], text=True)
        assert out.strip() == "ok"
