"""The Notion trace sink: each trace line becomes a page (a row) of a Notion database.

:meth:`NotionTraceSink.emit` only puts lines on a bounded in-memory queue; one
daemon thread takes them off in order and creates one page per line with
``POST {base_url}/v1/pages``, no faster than ``rate`` requests a second. The
engine never waits on Notion. When the queue is full, ``emit`` raises
:class:`NotionQueueFullError` and the engine holds the lines it could not hand
over and offers them again later (see :class:`slakit.abc.TraceSink`).

A line Notion refuses (400, 401, 403, 404), or one that still fails after
``max_attempts`` tries, is dropped with an ERROR log that names it and the
``slakit traces --emit`` command that resends it from the store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from slakit.abc import TraceSink, resend_window
from slakit.errors import AdapterError, ConfigError
from slakit.notify import parse_retry_after
from slakit.records import TraceRecord

__all__ = [
    "DEFAULT_PROPERTIES",
    "FIELDS",
    "MAX_TEXT",
    "NOTION_VERSION",
    "NotionQueueFullError",
    "NotionTraceSink",
    "clip",
    "page_properties",
]

log = logging.getLogger("slakit_notion")

#: The ``Notion-Version`` header the sink speaks.
NOTION_VERSION = "2022-06-28"
#: Notion's limit on the text of one rich-text object, in characters.
MAX_TEXT = 2000
#: Notion's limit on the name of a select option.
MAX_SELECT = 100
#: The longest ``Retry-After`` a 429 is waited for, in seconds.
MAX_RETRY_AFTER = 60.0

#: The Notion property type of each field the sink can write.
FIELDS: Mapping[str, str] = {
    "title": "title",
    "trace_id": "rich_text",
    "handoff_id": "rich_text",
    "policy": "rich_text",
    "rule": "rich_text",
    "action": "rich_text",
    "actor": "rich_text",
    "at": "date",
    "outcome": "select",
    "detail": "rich_text",
}
#: The Notion property each field is written to unless ``properties`` says otherwise.
DEFAULT_PROPERTIES: Mapping[str, str] = {
    "title": "Name",
    "trace_id": "Trace ID",
    "handoff_id": "Handoff",
    "policy": "Policy",
    "rule": "Rule",
    "action": "Action",
    "actor": "Actor",
    "at": "At",
    "outcome": "Outcome",
    "detail": "Detail",
}

_OWNER = "trace_sinks.notion"
_PERMANENT = frozenset({400, 401, 403, 404})


class NotionQueueFullError(AdapterError):
    """The sink's queue cannot take the lines; the engine holds them and offers them again."""


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, ending in ``…`` when it was cut.

    Characters outside the Basic Multilingual Plane (most emoji) count twice,
    as they do in Notion's JavaScript, so a clipped text is never refused.
    """
    if len(text) <= limit // 2 or sum(2 if ord(c) > 0xFFFF else 1 for c in text) <= limit:
        return text
    kept: list[str] = []
    units = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit - 1:
            break
        kept.append(char)
        units += width
    return "".join(kept) + "…"


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": clip(text)}}]


def _value(field: str, record: TraceRecord) -> dict[str, Any]:
    kind = FIELDS[field]
    if field == "title":
        return {"title": _rich_text(f"{record.handoff_id} {record.action}")}
    if kind == "date":
        return {"date": {"start": record.at.isoformat()}}
    if kind == "select":
        # Notion refuses commas in option names and names past 100 characters.
        name = clip(str(getattr(record, field)).replace(",", ";"), MAX_SELECT) or "-"
        return {"select": {"name": name}}
    if field == "detail":
        text = json.dumps(
            dict(record.detail),
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
        return {"rich_text": _rich_text(text)}
    return {"rich_text": _rich_text(str(getattr(record, field)))}


def page_properties(
    record: TraceRecord, properties: Mapping[str, str] = DEFAULT_PROPERTIES
) -> dict[str, Any]:
    """The ``properties`` of the page for one trace line.

    :param record: the trace line.
    :param properties: field name → Notion property name; fields mapped to
        ``""`` (or left out) are not written.
    :returns: Notion property values: the title ``"{handoff_id} {action}"``,
        ``at`` as a date (ISO-8601 with its offset), ``outcome`` as a select,
        ``detail`` as compact JSON text, the other fields as text; every text
        clipped to 2000 characters.
    """
    return {name: _value(field, record) for field, name in properties.items() if name}


class NotionTraceSink(TraceSink):
    """Writes each trace line as a page of one Notion database (see the module docstring).

    :param database_id: the database's id (32 hex digits, dashes optional).
    :param token: the integration's secret; prefer ``token_env``.
    :param token_env: the environment variable holding the secret when
        ``token`` is not given (default ``NOTION_TOKEN``).
    :param base_url: the API's address (a local fake in tests).
    :param timeout: seconds to wait for Notion, per request.
    :param rate: requests a second at most (Notion allows 3 on average).
    :param max_attempts: tries per line for 5xx, 408, 409, timeouts and
        connection errors before it is dropped.
    :param queue_size: lines waiting at most; past it :meth:`emit` raises.
    :param flush_timeout: seconds :meth:`close` waits for the queue to drain.
    :param properties: field name → Notion property name, over
        :data:`DEFAULT_PROPERTIES`; ``""`` leaves the field out.
    :param backoff_base: seconds before the first retry; each retry doubles it
        (half of it fixed, half random).
    :param backoff_cap: the longest wait between two retries, in seconds.
    :raises ConfigError: for a bad option, naming it and its value.
    """

    def __init__(
        self,
        database_id: str,
        token: str | None = None,
        *,
        token_env: str | None = None,
        base_url: str = "https://api.notion.com",
        timeout: float = 10.0,
        rate: float = 3.0,
        max_attempts: int = 5,
        queue_size: int = 10_000,
        flush_timeout: float = 10.0,
        properties: Mapping[str, str] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
    ) -> None:
        self.name = "notion"
        self.database_id = _database_id(database_id)
        self._token = _token(token, token_env)
        self.base_url = _base_url(base_url)
        self.timeout = _number("timeout", timeout, "a number of seconds > 0")
        self.rate = _number("rate", rate, "a number > 0")
        self.max_attempts = _whole("max_attempts", max_attempts)
        self.queue_size = _whole("queue_size", queue_size)
        self.flush_timeout = _number(
            "flush_timeout", flush_timeout, "a number of seconds >= 0", zero=True
        )
        self.properties = _properties(properties)
        self.backoff_base = _number("backoff_base", backoff_base, "a number of seconds > 0")
        self.backoff_cap = _number("backoff_cap", backoff_cap, "a number of seconds > 0")
        from slakit_notion import __version__

        self._client = httpx.Client(
            timeout=self.timeout,
            follow_redirects=False,
            headers={
                "authorization": f"Bearer {self._token}",
                "notion-version": NOTION_VERSION,
                "content-type": "application/json",
                "user-agent": f"slakit-notion/{__version__}",
            },
        )
        self._url = f"{self.base_url}/v1/pages"
        self._rng = random.Random()
        # Lines waiting; the head stays until it is sent or dropped, so it counts as waiting.
        self._queue: deque[TraceRecord] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        # The head of the last batch emit refused part-way that it did queue: the engine
        # offers the whole batch again, and those lines must not be written twice.
        self._taken: list[TraceRecord] = []
        self._next_request = 0.0

    def __repr__(self) -> str:
        return f"NotionTraceSink(name={self.name!r}, database_id={self.database_id!r})"

    @property
    def pending(self) -> int:
        """How many lines wait to be written (the one being written included)."""
        with self._cond:
            return len(self._queue)

    def emit(self, records: Iterable[TraceRecord]) -> None:
        """Queue the lines for the worker thread; never waits on Notion.

        A batch that was refused part-way and is offered again (the same
        record objects first, as the engine does) has its already queued head
        skipped, also when the engine has let go of the oldest of them
        (past its held-lines cap) in between.

        :raises NotionQueueFullError: when not every line fits in the queue
            (the ones that fit are queued, in order), or after :meth:`close`.
        """
        lines = list(records)
        with self._cond:
            if self._closing:
                raise NotionQueueFullError(
                    f"notion trace sink {self.name!r} is closed; {len(lines)} line(s) not taken"
                )
            taken, self._taken = self._taken, []
            skip = _queued_head(taken, lines)
            fresh = lines[skip:]
            room = max(0, self.queue_size - len(self._queue))
            accepted = fresh[:room]
            if accepted:
                self._queue.extend(accepted)
                self._start()
                self._cond.notify_all()
            if len(accepted) < len(fresh):
                self._taken = lines[: skip + len(accepted)]
                raise NotionQueueFullError(
                    f"notion trace sink {self.name!r}: queue full ({self.queue_size} line(s) "
                    f"wait for Notion); {len(fresh) - len(accepted)} line(s) not taken, the "
                    "engine holds them and offers them again"
                )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued line is written or dropped.

        :param timeout: seconds to wait at most (``None``: no limit).
        :returns: ``True`` when the queue is empty.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        """Stop taking lines, wait up to ``flush_timeout`` for the queue, then stop.

        Lines still queued after that are logged with the command that resends
        them. Closing twice does nothing more.
        """
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(self.flush_timeout)
            if thread.is_alive():
                self._abort.set()
                with self._cond:
                    self._cond.notify_all()
                thread.join(self.timeout + 1.0)
        with self._cond:
            unsent = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if unsent:
            since, until = resend_window(unsent)
            log.error(
                "notion trace sink %r closed with %d line(s) unsent (flush_timeout %g s); the "
                "store keeps them: slakit traces --emit --since %s --until %s sends them again",
                self.name,
                len(unsent),
                self.flush_timeout,
                since,
                until,
            )
        self._client.close()

    # -- the worker ---------------------------------------------------------------

    def _start(self) -> None:
        """Start the worker on the first line (called with the lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"slakit-notion-{self.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                record = self._queue[0]
            try:
                done = self._deliver(record)
            except Exception:  # nothing may end the worker: log and go on with the next line
                log.exception("notion trace sink %r: dropped a line after an error", self.name)
                done = True
            if not done:
                return  # aborted by close(); the line stays queued and is logged there
            with self._cond:
                if self._queue and self._queue[0] is record:
                    self._queue.popleft()
                self._cond.notify_all()

    def _deliver(self, record: TraceRecord) -> bool:
        """Write one line, retrying as it should.

        :returns: ``True`` when it was written or dropped; ``False`` when
            :meth:`close` stopped the worker first.
        """
        try:
            body = json.dumps(
                {
                    "parent": {"database_id": self.database_id},
                    "properties": page_properties(record, self.properties),
                },
                ensure_ascii=False,
            ).encode("utf-8")
        except Exception:
            log.exception("notion trace sink %r: dropping a malformed line %r", self.name, record)
            return True
        failures = 0
        throttled = 0
        while True:
            if not self._pace():
                return False
            try:
                response = self._client.post(self._url, content=body)
            except httpx.TimeoutException as exc:
                error = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return True
                error = f"HTTP {status}{_notion_message(response)}"
                if status == 429:
                    # Throttling is Notion pacing us, not a failed line: wait as told, keep it.
                    throttled += 1
                    asked = parse_retry_after(response.headers.get("retry-after"))
                    wait = min(
                        MAX_RETRY_AFTER, self._backoff(throttled) if asked is None else asked
                    )
                    log.warning(
                        "notion trace sink %r: Notion answered 429, waiting %.1f s", self.name, wait
                    )
                    if self._abort.wait(wait):
                        return False
                    continue
                if 300 <= status < 400:
                    # Redirects are not followed (the token would go along); base_url
                    # is not Notion's API, which no retry changes.
                    self._drop(record, f"{error}, a redirect, which is not followed", retried=False)
                    return True
                if status in _PERMANENT or (400 <= status < 500 and status not in (408, 409)):
                    self._drop(record, error, retried=False)
                    return True
            failures += 1
            if failures >= self.max_attempts:
                self._drop(record, f"{error}, after {failures} attempt(s)", retried=True)
                return True
            if self._abort.wait(self._backoff(failures)):
                return False

    def _pace(self) -> bool:
        """Wait for the next request slot under ``rate``; ``False`` when aborted."""
        wait = self._next_request - time.monotonic()
        if wait > 0 and self._abort.wait(wait):
            return False
        if self._abort.is_set():
            return False
        self._next_request = time.monotonic() + 1.0 / self.rate
        return True

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with equal jitter for the ``attempt``-th failure."""
        full = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt - 1, 32))
        return full / 2 + self._rng.uniform(0.0, full / 2)

    def _drop(self, record: TraceRecord, error: str, *, retried: bool) -> None:
        since, until = resend_window([record])
        log.error(
            "notion trace sink %r dropped the line of handoff %r (rule %s, action %s, at %s): "
            "%s%s; the store keeps it: slakit traces --emit --since %s --until %s sends it again",
            self.name,
            record.handoff_id,
            record.rule,
            record.action,
            record.at.isoformat(),
            error,
            "" if retried else " (not retried)",
            since,
            until,
        )


def _queued_head(taken: list[TraceRecord], lines: list[TraceRecord]) -> int:
    """How many of ``lines``, from the first, are the tail of ``taken`` (the lines of
    the last refused batch that were queued), compared by identity.

    The engine offers a refused batch again as it was, or without its oldest
    lines when it had to let them go: either way what is left of the queued
    head comes first.
    """
    if not taken or not lines:
        return 0
    first = next((i for i, t in enumerate(taken) if t is lines[0]), None)
    if first is None:
        return 0
    tail = taken[first:]
    if len(lines) < len(tail) or not all(a is b for a, b in zip(tail, lines, strict=False)):
        return 0
    return len(tail)


def _notion_message(response: httpx.Response) -> str:
    """``: code: message`` from Notion's error body, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, Mapping) and data.get("message"):
        code = data.get("code")
        text = f"{code}: {data['message']}" if code else str(data["message"])
    else:
        text = response.text
    text = " ".join(text.split())[:300]
    return f": {text}" if text else ""


# -- option checks -----------------------------------------------------------------


def _database_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{_OWNER}.database_id must be a non-empty string, got {value!r}",
            field="database_id",
            value=value,
        )
    digits = value.strip().replace("-", "")
    if len(digits) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ConfigError(
            f"{_OWNER}.database_id must be a Notion database id (32 hex digits, dashes "
            f"optional; the part of the database's URL before '?v='), got {value!r}",
            field="database_id",
            value=value,
        )
    return value.strip()


def _token(token: Any, token_env: Any) -> str:
    if token is not None:
        if token_env is not None:
            raise ConfigError(
                f"{_OWNER} takes token or token_env, not both", field="token_env", value=token_env
            )
        if not isinstance(token, str) or not token.strip():
            # Not echoed: it may be a secret.
            raise ConfigError(f"{_OWNER}.token must be a non-empty string", field="token")
        return _one_line(token.strip(), "token")
    variable = "NOTION_TOKEN" if token_env is None else token_env
    if not isinstance(variable, str) or not variable:
        raise ConfigError(
            f"{_OWNER}.token_env must name an environment variable, got {variable!r}",
            field="token_env",
            value=variable,
        )
    found = os.environ.get(variable, "").strip()
    if not found:
        raise ConfigError(
            f"{_OWNER} needs a token: give token, or set the environment variable "
            f"{variable!r} (token_env), which is not set or empty",
            field="token",
            value=variable,
        )
    return _one_line(found, "token_env")


def _one_line(token: str, field: str) -> str:
    """``token``, if it can go in a header: a line break would put it in error messages."""
    if any(not "\x21" <= c <= "\x7e" for c in token):
        raise ConfigError(
            f"{_OWNER} token must be one line of visible ASCII (a pasted line break?)",
            field=field,
            value="…",
        )
    return token


def _base_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(
            f"{_OWNER}.base_url must be an http:// or https:// URL, got {value!r}",
            field="base_url",
            value=value,
        )
    try:
        parsed = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"{_OWNER}.base_url {value!r} is invalid: {exc}", field="base_url", value=value
        ) from None
    if not parsed.host:
        raise ConfigError(
            f"{_OWNER}.base_url must be an http:// or https:// URL, got {value!r}",
            field="base_url",
            value=value,
        )
    return value.rstrip("/")


def _number(field: str, value: Any, want: str, *, zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise ConfigError(
            f"{_OWNER}.{field} must be {want}, got {value!r}", field=field, value=value
        )
    return float(value)


def _whole(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{_OWNER}.{field} must be a whole number >= 1, got {value!r}", field=field, value=value
        )
    return value


def _properties(value: Any) -> dict[str, str]:
    if value is None:
        return dict(DEFAULT_PROPERTIES)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{_OWNER}.properties must be a table of field = Notion property name, got {value!r}",
            field="properties",
            value=value,
        )
    merged = dict(DEFAULT_PROPERTIES)
    for field, name in value.items():
        if field not in FIELDS:
            raise ConfigError(
                f"{_OWNER}.properties: unknown field {field!r} (known: {', '.join(FIELDS)})",
                field=f"properties.{field}",
                value=field,
            )
        if not isinstance(name, str):
            raise ConfigError(
                f'{_OWNER}.properties.{field} must be a Notion property name (or "" to leave '
                f"it out), got {name!r}",
                field=f"properties.{field}",
                value=name,
            )
        merged[field] = name
    used: dict[str, str] = {}
    for field, name in merged.items():
        if not name:
            continue
        if name in used:
            raise ConfigError(
                f"{_OWNER}.properties: {used[name]} and {field} both write property {name!r}",
                field=f"properties.{field}",
                value=name,
            )
        used[name] = field
    return merged
