"""Helpers for notifier authors: ``Retry-After`` headers and config checks.

The notifier adapters (``slakit-slack``, ``slakit-webhook``, ``slakit-smtp``)
use these, and a third-party notifier may too. Each check raises
:class:`~slakit.errors.ConfigError` with a message that starts with ``owner``,
the name the notifier goes by in errors (``"webhook"``, ``"smtp notifier"``),
and names the option and its value.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from slakit.abc import Notifier
from slakit.errors import ConfigError, TransientNotifyError
from slakit.records import Notification

__all__ = [
    "env_name",
    "env_name_shown",
    "is_host",
    "parse_retry_after",
    "positive_seconds",
    "secret_from",
    "table_option",
]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    :param value: the header's value, or ``None`` when it is absent.
    :param now: the current Unix time, for an HTTP date (default: the system clock).
    :returns: ``None`` when the header is absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def positive_seconds(owner: str | None, field: str, value: Any) -> float:
    """``value`` as a float, if it is a positive, finite number of seconds.

    :param owner: the notifier's name in the error message (``None``: the field alone).
    :param field: the option, e.g. ``"timeout"``.
    :raises ConfigError: for anything else (``True`` included).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"{field if owner is None else f'{owner} {field}'} must be a positive number "
            f"of seconds, got {value!r}",
            field=field,
            value=value,
        )
    return float(value)


#: An environment variable name a shell can set.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The custom spelling of one (``SLACK_BOT_TOKEN``).
_UPPER_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def secret_from(owner: str, value: str | None, env: str | None, *, field: str) -> str | None:
    """A secret given in the config as ``field``, or read from the variable ``field_env`` names.

    Reading it when the notifier is built makes a missing variable a config
    error at start-up rather than a failed delivery later.

    :param owner: the notifier's name in error messages.
    :param value: the ``field`` option (the secret itself), or ``None``.
    :param env: the ``field_env`` option (an environment variable name), or ``None``.
    :param field: the option's name, e.g. ``"password"``.
    :returns: the secret, or ``None`` when neither option is given. A variable
        that is set but empty gives ``""``.
    :raises ConfigError: when both options are given, when ``field_env`` is not
        a variable name, or when that variable is not set.
    """
    env_field = f"{field}_env"
    if value is not None and env is not None:
        raise ConfigError(
            f"{owner} takes {field} or {env_field}, not both", field=env_field, value=env
        )
    if env is None:
        return value
    env = env_name(owner, env_field, env)
    found = os.environ.get(env)
    if found is None:
        shown = env_name_shown(env)
        raise ConfigError(
            f"{owner} {env_field} names {shown}, which is not set", field=env_field, value=shown
        )
    return found


def env_name(owner: str, field: str, value: Any) -> str:
    """``value`` when it is an environment variable name a shell can set.

    :raises ConfigError: naming ``field``, and showing the value only in part when
        it looks like a secret pasted in the name's place (:func:`env_name_shown`).
    """
    if isinstance(value, str) and _ENV_NAME.fullmatch(value):
        return value
    shown = env_name_shown(value) if isinstance(value, str) else repr(value)
    raise ConfigError(
        f"{owner} {field} must name an environment variable (letters, digits and _, "
        f"not starting with a digit), got {shown}",
        field=field,
        value=shown,
    )


def env_name_shown(name: str) -> str:
    """An ``*_env`` option's value as an error message shows it: whole, unless it
    looks like a secret pasted in place of the variable's name (names are short or
    upper case by custom); then its first four characters and its length only."""
    if len(name) <= 16 or _UPPER_ENV_NAME.fullmatch(name):
        return repr(name)
    return f"{name[:4]!r}… ({len(name)} characters, shown in part: a secret, not a name?)"


def table_option(owner: str, field: str, value: Any, *, shape: str) -> Mapping[Any, Any]:
    """A table option (``users``, ``headers``…): ``{}`` when absent, else the mapping itself.

    The entries are left for the caller to check.

    :param shape: what the entries look like, for the message, e.g. ``"name = value"``.
    :raises ConfigError: when ``value`` is given but is not a table.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{owner} {field} must be a table of {shape}, got {value!r}", field=field, value=value
        )
    return value


class _UnbuiltNotifier(Notifier):
    """A configured notifier by name only, for work that sends nothing (reports,
    events, exports): its adapter is not built, so the secrets it reads need not
    be set. Sending through it is an error the engine retries later."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.name = adapter

    def send(self, notification: Notification) -> None:
        raise TransientNotifyError(
            f"notifier {self.name!r} ({self.adapter}) was not built for this command"
        )


# A host name as a resolver takes it (IDNs in their xn-- form): labels may hold
# underscores, as container and service names do; a trailing dot marks an absolute name.
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def is_host(value: str) -> bool:
    """Whether ``value`` is a host name or an IP address (IPv6 without brackets).

    A name in another script counts in its IDNA (``xn--``) form.
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return True
    try:
        name = value.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or over-long label
        return False
    return _HOST.fullmatch(name) is not None
