"""Stored text shown to people: control characters written out, not obeyed."""

from __future__ import annotations

import re

__all__ = ["escape_controls"]

#: C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates
#: (which reorder what a reader sees: U+202E shows "exe.txt" for "txt.exe").
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with each C0/C1 control character (and DEL) written as ``\\xNN``, and
    each bidirectional control as ``\\uNNNN``, except those in ``keep``: a stored
    value (an owner, an attribute, a peer's error) cannot drive a terminal or a
    renderer, nor reorder what is shown."""

    def written(m: re.Match[str]) -> str:
        char = m.group()
        if char in keep:
            return char
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _CONTROLS.sub(written, text)
