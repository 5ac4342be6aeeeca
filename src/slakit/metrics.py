"""Hit rate: handoffs that met their SLA over handoffs evaluated, per basis and per group.

The numbers are computed from timestamps, never from the ``breached`` flag:

* a handoff belongs to the window ``[since, until)`` by its ``started_at``;
* it is **excluded** when it was cancelled (counted and listed, never in the
  denominator);
* on each basis (``wall`` = absolute, ``business`` = business-hours adjusted)
  it **met** its SLA when its stop event came at or before that basis's 1×
  deadline, and **missed** it when the stop event came later, or when it is
  still open (not stopped, cancelled or paused) and ``now`` is past the
  deadline; anything else is **pending**.

``docs/metrics.md`` gives the formula of every number.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from slakit._time import ensure_aware, optional_aware, to_iso
from slakit.abc import RecordStore
from slakit.errors import InvalidGroupKeyError, ValidationError
from slakit.handoff import Handoff

if TYPE_CHECKING:
    from slakit.engine import Engine

__all__ = [
    "BASES",
    "GROUP_KEYS",
    "BasisCounts",
    "GroupStats",
    "HitRateReport",
    "InvalidGroupKeyError",
    "Outcome",
    "classify",
    "hit_rate",
]

#: ``wall`` is the absolute basis, ``business`` the business-hours adjusted one.
BASES: Final = ("business", "wall")
#: Handoff fields a report can be grouped by; ``attributes.NAME`` works too.
GROUP_KEYS: Final = (
    "channel",
    "segment",
    "policy",
    "owner",
    "within_business_hours",
    "backup_owner",
    "responded_by",
    "breached",
    "breach_reason",
    "stage",
    "cancel_reason",
)
_ATTR_PREFIX: Final = "attributes."
_PROGRESS_EVERY: Final = 50_000


class Outcome:
    """What a handoff counts as on one basis (plain strings, stable in JSON)."""

    MET = "met"
    MISSED = "missed"
    PENDING = "pending"
    EXCLUDED = "excluded"


def _deadline(h: Handoff, basis: str) -> datetime | None:
    return h.wall_deadline_at if basis == "wall" else h.business_deadline_at


def classify(handoff: Handoff, basis: str = "business", now: datetime | None = None) -> str:
    """What ``handoff`` counts as on ``basis`` at ``now``: one of :class:`Outcome`.

    A handoff without that basis's deadline (``wall_deadline_at`` or
    ``business_deadline_at``; a record built by hand) is pending.

    :param handoff: the handoff.
    :param basis: ``"business"`` or ``"wall"``.
    :param now: the instant open handoffs are judged at (default: the system time).
    :returns: ``"met"``, ``"missed"``, ``"pending"`` or ``"excluded"``.
    :raises ValidationError: for an unknown basis or a naive ``now``.
    """
    _check_basis(basis)
    when = ensure_aware("now", now).astimezone(UTC) if now is not None else datetime.now(UTC)
    if handoff.cancelled_at is not None:
        return Outcome.EXCLUDED
    return _OUTCOMES[_code(handoff, _deadline(handoff, basis), when)]


# Outcome codes in the hot loop: 0 met, 1 missed, 2 pending.
_OUTCOMES: Final = (Outcome.MET, Outcome.MISSED, Outcome.PENDING)


def _utc(t: datetime) -> datetime:
    """``t`` in UTC. Two times sharing a zone compare by wall clock, fold ignored, so a
    record holding local times compares wrongly in a fall-back hour; in UTC it cannot."""
    return t if t.tzinfo is UTC else t.astimezone(UTC)


def _code(h: Handoff, deadline: datetime | None, now: datetime) -> int:
    """``now`` is in UTC. (:func:`_utc` written inline: this runs per handoff and basis.)"""
    if deadline is None:
        return 2
    if deadline.tzinfo is not UTC:
        deadline = deadline.astimezone(UTC)
    stopped = h.stopped_at
    if stopped is not None:
        if stopped.tzinfo is not UTC:
            stopped = stopped.astimezone(UTC)
        return 0 if stopped <= deadline else 1
    # A clock paused after its deadline cannot un-miss it; one paused before waits.
    if now > deadline:
        paused = h.paused_at
        if paused is None:
            return 1
        if paused.tzinfo is not UTC:
            paused = paused.astimezone(UTC)
        if paused > deadline:
            return 1
    return 2


@attrs.frozen
class BasisCounts:
    """Met, missed and pending counts on one basis."""

    met: int = 0
    missed: int = 0
    pending: int = 0

    @property
    def evaluated(self) -> int:
        """``met + missed``: the denominator of the hit rate."""
        return self.met + self.missed

    @property
    def rate(self) -> float | None:
        """``met / evaluated``, or ``None`` when nothing was evaluated."""
        evaluated = self.evaluated
        return self.met / evaluated if evaluated else None

    def __add__(self, other: BasisCounts) -> BasisCounts:
        return BasisCounts(
            self.met + other.met, self.missed + other.missed, self.pending + other.pending
        )

    def to_dict(self) -> dict[str, Any]:
        """Counts, ``evaluated`` and ``rate`` as a JSON-ready mapping."""
        return {
            "evaluated": self.evaluated,
            "met": self.met,
            "missed": self.missed,
            "pending": self.pending,
            "rate": self.rate,
        }


@attrs.frozen
class GroupStats:
    """One group of a hit-rate report: both bases' counts and the exclusions.

    ``evaluated``, ``met``, ``missed``, ``pending`` and ``rate`` read the
    report's basis; :attr:`wall` and :attr:`business` hold both.

    :ivar key: the values of the report's ``by`` keys, in order (``()`` for the total).
    """

    key: tuple[Any, ...]
    by: tuple[str, ...]
    basis: str
    wall: BasisCounts
    business: BasisCounts
    excluded: int = 0

    def counts(self, basis: str | None = None) -> BasisCounts:
        """The counts on ``basis`` (default: the report's basis)."""
        b = basis or self.basis
        _check_basis(b)
        return self.wall if b == "wall" else self.business

    @property
    def evaluated(self) -> int:
        """Met plus missed on the report's basis."""
        return self.counts().evaluated

    @property
    def met(self) -> int:
        """Handoffs whose stop event came at or before the deadline."""
        return self.counts().met

    @property
    def missed(self) -> int:
        """Handoffs stopped after the deadline, or open past it."""
        return self.counts().missed

    @property
    def pending(self) -> int:
        """Handoffs not yet decided (open before the deadline, or paused)."""
        return self.counts().pending

    @property
    def rate(self) -> float | None:
        """``met / evaluated`` on the report's basis, ``None`` when nothing was evaluated."""
        return self.counts().rate

    @property
    def handoffs(self) -> int:
        """All handoffs of the group: evaluated, pending and excluded."""
        return self.wall.evaluated + self.wall.pending + self.excluded

    def key_dict(self) -> dict[str, Any]:
        """The ``by`` keys and this group's values."""
        return dict(zip(self.by, self.key, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: the key, the report basis's counts, both bases, exclusions."""
        return {
            "key": self.key_dict(),
            **self.counts().to_dict(),
            "excluded": self.excluded,
            "handoffs": self.handoffs,
            "wall": self.wall.to_dict(),
            "business": self.business.to_dict(),
        }


class _LazyIds:
    """Excluded ids, listed on first use when the counts came from the store."""

    def __init__(
        self, ids: Sequence[str] | None = None, loader: Callable[[], list[str]] | None = None
    ) -> None:
        self._ids = tuple(ids) if ids is not None else None
        self._loader = loader
        self._lock = threading.Lock()

    def get(self) -> tuple[str, ...]:
        with self._lock:
            if self._ids is None:
                self._ids = tuple(self._loader() if self._loader is not None else ())
                self._loader = None
            return self._ids


@attrs.frozen
class HitRateReport:
    """The result of :func:`hit_rate`.

    :ivar total: every handoff in the window as one group (``key == ()``).
    :ivar groups: groups keyed by the tuple of their ``by`` values, sorted by key;
        only groups with at least one handoff appear.
    :ivar computed_by: ``"store"`` when the store aggregated, ``"python"`` otherwise.
    """

    basis: str
    by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    now: datetime
    total: GroupStats
    groups: Mapping[tuple[Any, ...], GroupStats]
    computed_by: str = "python"
    _excluded: _LazyIds = attrs.field(factory=_LazyIds, eq=False, repr=False, alias="excluded")

    @property
    def excluded_ids(self) -> tuple[str, ...]:
        """Ids of the cancelled handoffs left out of the denominator, in start order."""
        return self._excluded.get()

    @property
    def wall(self) -> BasisCounts:
        """Total counts on the wall (absolute) basis."""
        return self.total.wall

    @property
    def business(self) -> BasisCounts:
        """Total counts on the business (adjusted) basis."""
        return self.total.business

    @property
    def rate(self) -> float | None:
        """The total hit rate on the report's basis."""
        return self.total.rate

    def group(self, *key: Any) -> GroupStats:
        """The group with these ``by`` values; an all-zero group when none matched."""
        found = self.groups.get(tuple(key))
        if found is not None:
            return found
        return GroupStats(tuple(key), self.by, self.basis, BasisCounts(), BasisCounts())

    def with_basis(self, basis: str) -> HitRateReport:
        """The same counts read on the other basis (no recomputation)."""
        _check_basis(basis)
        return attrs.evolve(
            self,
            basis=basis,
            total=attrs.evolve(self.total, basis=basis),
            groups={k: attrs.evolve(g, basis=basis) for k, g in self.groups.items()},
            excluded=self._excluded,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (what ``slakit report --json`` prints)."""
        return {
            "basis": self.basis,
            "by": list(self.by),
            "since": to_iso(self.since),
            "until": to_iso(self.until),
            "now": to_iso(self.now),
            "computed_by": self.computed_by,
            "total": self.total.to_dict(),
            "groups": [g.to_dict() for g in self.groups.values()],
            "excluded_ids": list(self.excluded_ids),
        }


def _check_basis(basis: str) -> None:
    if basis not in BASES:
        raise ValidationError(
            f"basis must be 'business' or 'wall', got {basis!r}", field="basis", value=basis
        )


def normalize_by(by: str | Sequence[str] | None) -> tuple[str, ...]:
    """``by`` as a tuple of checked keys; a string is split on commas.

    :raises InvalidGroupKeyError: naming the first key that is not groupable.
    """
    if by is None:
        return ()
    items = [p.strip() for p in by.split(",")] if isinstance(by, str) else list(by)
    out: list[str] = []
    for key in items:
        if not isinstance(key, str) or not key:
            if isinstance(by, str):
                continue
            raise InvalidGroupKeyError(
                f"by keys must be non-empty strings, got {key!r}", field="by"
            )
        ok = key in GROUP_KEYS or (key.startswith(_ATTR_PREFIX) and len(key) > len(_ATTR_PREFIX))
        if not ok:
            raise InvalidGroupKeyError(
                f"cannot group by {key!r}; use {', '.join(GROUP_KEYS)} or attributes.NAME",
                field="by",
                value=key,
            )
        if key not in out:
            out.append(key)
    return tuple(out)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _getter(key: str) -> Callable[[Handoff], Any]:
    if key.startswith(_ATTR_PREFIX):
        name = key[len(_ATTR_PREFIX) :]
        return lambda h: _hashable(h.attributes.get(name))
    return lambda h: getattr(h, key)


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    # Mixed types (None, bools, numbers, text) sort without comparing across types.
    return tuple((v is None, type(v).__name__, str(v)) for v in key)


def hit_rate(
    source: RecordStore | Engine | Iterable[Handoff],
    since: datetime | None = None,
    until: datetime | None = None,
    by: str | Sequence[str] = (),
    basis: str = "business",
    now: datetime | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> HitRateReport:
    """The SLA hit rate of the handoffs started in ``[since, until)``, per group.

    Both bases are computed in one pass; ``basis`` picks the one the group's
    ``met``/``missed``/``rate`` read. A store that aggregates in SQL does the
    counting (:meth:`RecordStore.aggregate_hit_rate`); otherwise Python does,
    in one pass over the handoffs.

    :param source: a :class:`~slakit.abc.RecordStore`, an engine (its store),
        or an iterable of :class:`~slakit.handoff.Handoff`.
    :param since: first instant of the window (inclusive); ``None`` for no lower bound.
    :param until: end of the window (exclusive); ``None`` for no upper bound.
    :param by: group keys: any of :data:`GROUP_KEYS` (``channel``, ``segment``,
        ``policy``, ``owner``, ``breach_reason``…) or ``attributes.NAME``; a string
        is split on commas.
    :param basis: ``"business"`` (adjusted) or ``"wall"`` (absolute).
    :param now: the instant open handoffs are judged at (default: the engine's
        clock when ``source`` is an engine, else the system time).
    :param progress: called with the number of handoffs read so far, now and then.
    :returns: the report.
    :raises ValidationError: for a naive time, an unknown basis or a bad ``by`` key.
    """
    _check_basis(basis)
    keys = normalize_by(by)
    since = optional_aware("since", since)
    until = optional_aware("until", until)
    if now is None:
        clock = getattr(source, "clock", None)
        now = clock.now() if clock is not None else datetime.now(UTC)
    when = ensure_aware("now", now)
    store = getattr(source, "store", source)
    if isinstance(store, RecordStore):
        rows = store.aggregate_hit_rate(since=since, until=until, by=keys, now=when)
        if rows is not None:
            return _from_store_rows(rows, store, keys, basis, since, until, when)
        handoffs: Iterable[Handoff] = store.iter_handoffs(since=since, until=until)
    else:
        handoffs = _window(cast("Iterable[Handoff]", source), since, until)
    return _compute(handoffs, keys, basis, since, until, when, progress)


def _window(
    handoffs: Iterable[Handoff], since: datetime | None, until: datetime | None
) -> Iterator[Handoff]:
    if since is None and until is None:
        yield from handoffs
        return
    since = since.astimezone(UTC) if since is not None else None
    until = until.astimezone(UTC) if until is not None else None
    for h in handoffs:
        started = _utc(h.started_at)
        if since is not None and started < since:
            continue
        if until is not None and started >= until:
            continue
        yield h


def _compute(
    handoffs: Iterable[Handoff],
    keys: tuple[str, ...],
    basis: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> HitRateReport:
    getters = [_getter(k) for k in keys]
    by_attribute = any(k.startswith(_ATTR_PREFIX) for k in keys)
    now_utc = now.astimezone(UTC)
    # Per group: [wall met, missed, pending, business met, missed, pending, excluded].
    acc: dict[tuple[Any, ...], list[int]] = {}
    # Per group holding a boolean in its key: the key with any numbers seen in its place.
    numbers: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    excluded_ids: list[str] = []
    n = 0
    for h in handoffs:
        n += 1
        if progress is not None and n % _PROGRESS_EVERY == 0:
            progress(n)
        key = tuple(g(h) for g in getters)
        slot = acc.get(key)
        if slot is None:
            slot = acc[key] = [0, 0, 0, 0, 0, 0, 0]
        elif by_attribute and (True in key or False in key):
            numbers[key] = _numbers_over_bools(numbers.get(key), key)
        if h.cancelled_at is not None:
            slot[6] += 1
            excluded_ids.append(h.id)
            continue
        slot[_code(h, h.wall_deadline_at, now_utc)] += 1
        slot[3 + _code(h, h.business_deadline_at, now_utc)] += 1
    if progress is not None:
        progress(n)
    if numbers:
        # A group where JSON true met the number 1 (Python keys them as one) is
        # labelled by the number, as the SQL stores label it: a boolean label
        # only for a group of booleans alone, whatever the order of the rows.
        acc = {_relabel(k, numbers.get(k)): v for k, v in acc.items()}
    return _assemble(acc, keys, basis, since, until, now, "python", _LazyIds(excluded_ids))


def _numbers_over_bools(seen: tuple[Any, ...] | None, key: tuple[Any, ...]) -> tuple[Any, ...]:
    """``key``'s values merged into ``seen``: at each place a number wins over a boolean."""
    if seen is None:
        return key
    return tuple(
        b if type(a) is bool and type(b) is not bool else a for a, b in zip(seen, key, strict=True)
    )


def _relabel(key: tuple[Any, ...], seen: tuple[Any, ...] | None) -> tuple[Any, ...]:
    return key if seen is None else _numbers_over_bools(key, seen)


def _assemble(
    acc: Mapping[tuple[Any, ...], Sequence[int]],
    keys: tuple[str, ...],
    basis: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    computed_by: str,
    excluded: _LazyIds,
) -> HitRateReport:
    groups: dict[tuple[Any, ...], GroupStats] = {}
    total = [0] * 7
    for key in sorted(acc, key=_sort_key):
        c = acc[key]
        for i in range(7):
            total[i] += c[i]
        groups[key] = GroupStats(
            key,
            keys,
            basis,
            BasisCounts(c[0], c[1], c[2]),
            BasisCounts(c[3], c[4], c[5]),
            c[6],
        )
    tot = GroupStats(
        (),
        (),
        basis,
        BasisCounts(total[0], total[1], total[2]),
        BasisCounts(total[3], total[4], total[5]),
        total[6],
    )
    return HitRateReport(
        basis=basis,
        by=keys,
        since=since,
        until=until,
        now=now,
        total=tot,
        groups=groups,
        computed_by=computed_by,
        excluded=excluded,
    )


def _store_key_value(key: str, value: Any) -> Any:
    # SQL stores hand booleans back as 0/1; the Python path keeps bools.
    if key == "within_business_hours" and value is not None:
        return bool(value)
    return _hashable(value)


def _from_store_rows(
    rows: Sequence[Mapping[str, Any]],
    store: RecordStore,
    keys: tuple[str, ...],
    basis: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> HitRateReport:
    acc: dict[tuple[Any, ...], list[int]] = {}
    names = (
        "wall_met",
        "wall_missed",
        "wall_pending",
        "business_met",
        "business_missed",
        "business_pending",
        "excluded",
    )
    for row in rows:
        key = tuple(_store_key_value(k, row.get(k)) for k in keys)
        slot = acc.setdefault(key, [0] * 7)
        for i, name in enumerate(names):
            slot[i] += int(row.get(name) or 0)
    # Drop all-zero groups some stores may return, so both paths agree.
    acc = {k: v for k, v in acc.items() if any(v)}

    def load() -> list[str]:
        return store.excluded_ids(since=since, until=until)

    lazy = _LazyIds(() if not any(v[6] for v in acc.values()) else None, load)
    return _assemble(acc, keys, basis, since, until, now, "store", lazy)
