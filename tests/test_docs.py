"""The docs keep up with the code: every hook and public concept has its page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import slakit
from slakit import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("slakit_"))


class TestPluginDocs:
    @pytest.mark.parametrize("hook", hook_names())
    def test_every_hook_has_a_docs_section(self, hook: str) -> None:
        """docs/plugins.md has a `### hook` section for every hookspec."""
        text = (DOCS / "plugins.md").read_text()
        assert re.search(rf"^### {hook}$", text, re.M), f"{hook} is not documented"

    def test_no_docs_section_for_a_hook_that_does_not_exist(self) -> None:
        """Every documented hook exists (no stale sections)."""
        text = (DOCS / "plugins.md").read_text()
        documented = re.findall(r"^### (slakit_\w+)$", text, re.M)
        assert sorted(documented) == hook_names()

    def test_every_hook_has_a_docstring(self) -> None:
        """Each hookspec says when it is called and what its parameters mean."""
        for name in hook_names():
            doc = getattr(hookspecs, name).__doc__ or ""
            assert "Called" in doc, name
            assert ":param" in doc, name


class TestConceptDocs:
    @pytest.mark.parametrize(
        "page",
        ["index.md", "plugins.md", "handoff.md", "policies.md", "engine.md", "errors.md"],
    )
    def test_core_page_exists(self, page: str) -> None:
        """Each core concept has a docs page."""
        assert (DOCS / page).is_file(), page

    def test_every_public_name_is_mentioned_in_the_docs(self) -> None:
        """Every name in slakit.__all__ appears somewhere in docs/."""
        text = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
        missing = [n for n in slakit.__all__ if n != "__version__" and n not in text]
        assert missing == []

    def test_every_error_class_is_documented(self) -> None:
        """docs/errors.md names every exception in slakit.errors."""
        from slakit import errors

        text = (DOCS / "errors.md").read_text()
        missing = [n for n in errors.__all__ if n not in text]
        assert missing == []
