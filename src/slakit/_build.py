"""Constructors that set a slotted class's fields without ``__init__``.

The engine copies records and builds its own trace, notification and
escalation records thousands of times a second from values it computed or
read back from its own store, so they need no converters or validators. The
builders here set each slot through its descriptor in straight-line code,
generated once per class (as attrs generates ``__init__``): about twice as
fast as a loop over the fields. When the optional compiled module
``slakit._crecords`` is present, its ``Builder`` does the same in C, about
ten times faster again; :data:`ACCELERATED` says which one is in use.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from slakit import _time

T = TypeVar("T")

_Builder: Any = None
if _time.ACCELERATED:  # else (no compiler, or SLAKIT_PURE=1): the generated Python builders
    from slakit import _crecords

    _Builder = _crecords.Builder

#: Whether the compiled builders are in use.
ACCELERATED = _Builder is not None


def _source(cls: type, names: Sequence[str], packed: bool) -> tuple[str, dict[str, Any]]:
    args = [f"a{i}" for i in range(len(names))]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def build(values):" if packed else f"def build({', '.join(args)}):"]
    if packed:
        lines.append(f"    {', '.join(args)}{',' if len(args) == 1 else ''} = values")
    lines.append("    obj = new(cls)")
    for i, name in enumerate(names):
        namespace[f"s{i}"] = getattr(cls, name).__set__
        lines.append(f"    s{i}(obj, a{i})")
    lines.append("    return obj")
    return "\n".join(lines) + "\n", namespace


def positional(cls: type[T], names: Sequence[str]) -> Callable[..., T]:
    """``build(v0, v1, ...)``: an instance of ``cls`` with ``names`` set to the values."""
    if _Builder is not None:
        built: Callable[..., T] = _Builder(cls, tuple(names))
        return built
    return python_positional(cls, names)


def packed(cls: type[T], names: Sequence[str]) -> Callable[[Sequence[Any]], T]:
    """``build(values)``: like :func:`positional`, taking every value in one sequence."""
    if _Builder is not None:
        built: Callable[[Sequence[Any]], T] = _Builder(cls, tuple(names), packed=True)
        return built
    return python_packed(cls, names)


def replacer(cls: type[T], names: Sequence[str]) -> Callable[..., T]:
    """``replace(obj, **changes)``: a copy of ``obj`` (exactly a ``cls``) with the named
    fields changed and no ``__init__``; ``KeyError`` for a name not in ``names``."""
    if _Builder is not None:
        built: Callable[..., T] = _Builder(cls, tuple(names), packed=True).replace
        return built
    return python_replacer(cls, names)


def python_replacer(cls: type[T], names: Sequence[str]) -> Callable[..., T]:
    """:func:`replacer` in Python (what runs without the compiled module)."""
    index = {name: i for i, name in enumerate(names)}
    values_of = operator.attrgetter(*names)
    build = python_packed(cls, names)

    def replace(obj: T, **changes: Any) -> T:
        if type(obj) is not cls:
            raise TypeError(f"replace needs a {cls.__name__}, got {type(obj).__name__}")
        values = list(values_of(obj))
        for name, value in changes.items():
            values[index[name]] = value
        return build(values)

    return replace


def python_positional(cls: type[T], names: Sequence[str]) -> Callable[..., T]:
    """:func:`positional` in generated Python (what runs without the compiled module)."""
    source, namespace = _source(cls, names, packed=False)
    exec(compile(source, f"<slakit positional {cls.__name__}>", "exec"), namespace)
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"{cls.__name__}._trusted"
    return build


def python_packed(cls: type[T], names: Sequence[str]) -> Callable[[Sequence[Any]], T]:
    """:func:`packed` in generated Python (what runs without the compiled module)."""
    source, namespace = _source(cls, names, packed=True)
    exec(compile(source, f"<slakit packed {cls.__name__}>", "exec"), namespace)
    build: Callable[[Sequence[Any]], T] = namespace["build"]
    return build
