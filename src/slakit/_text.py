"""Stored text shown to people: control characters written out, not obeyed."""

from __future__ import annotations

import re

__all__ = ["escape_controls"]

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with each C0/C1 control character (and DEL) written as ``\\xNN``,
    except those in ``keep``: a stored value (an owner, an attribute, a peer's
    error) cannot drive a terminal or a renderer."""

    def written(m: re.Match[str]) -> str:
        char = m.group()
        return char if char in keep else f"\\x{ord(char):02x}"

    return _CONTROLS.sub(written, text)
