"""Session settings (`SET fedsql.mode = 'oblivious'`): the one list of names and values.

Settings enter at several doors — a client's SET, the Flight SQL session options, the
settings map of an issuer's Execute and of a peer's RunRequest, the federation's
default mode, the CLI and `fedsql.connect(mode=...)` — and every door checks them
here, so a typo is refused with the allowed values instead of being carried silently
into a plan (and, through a peer's RunRequest, into another party's node).
"""

from __future__ import annotations

from typing import Mapping

from fedsql.errors import SqlSyntaxError, UnsupportedSql

MODES: tuple[str, ...] = ("reveal", "sizes", "oblivious")
"""Leakage modes, least protective first (docs/security.md "What each mode leaks")."""

SETTINGS: dict[str, tuple[str, ...] | None] = {
    "fedsql.mode": MODES,
    "fedsql.epsilon": None,  # a number > 0; default: min(1.0, every touched DP table's max_epsilon_per_query)
    "fedsql.hidden_params": ("off", "on"),  # on: the statement's ? values stay secret (hidden lookup)
}
"""Session settings a client may SET, with their allowed values (None: checked by its own rule)."""


def check_setting(name: str, value: str) -> str:
    """The value to store for `name` (normalised), or a clear error naming what is allowed."""
    if name not in SETTINGS:
        raise UnsupportedSql(f"unknown setting '{name[:60]}'; the settings are: {', '.join(SETTINGS)}")
    if not isinstance(value, str):
        raise SqlSyntaxError(f"{name} must be a string value, got {type(value).__name__}")
    allowed = SETTINGS[name]
    if allowed is not None and value not in allowed:
        raise SqlSyntaxError(f"{name} must be one of {', '.join(allowed)} "
                             f"(e.g. SET {name} = '{allowed[-1]}'), got '{value[:40]}'")
    if name == "fedsql.epsilon":
        return check_epsilon(value)
    return value


def check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """Every setting of a session or request checked (values as given)."""
    for name, value in settings.items():
        check_setting(name, value)
    return dict(settings)


def check_epsilon(value: str) -> str:
    """`SET fedsql.epsilon = 0.5`: a finite number > 0 (the query's total ε, docs/dp.md)."""
    try:
        eps = float(value)
    except ValueError:
        eps = float("nan")
    if not (0 < eps < float("inf")):
        raise SqlSyntaxError(f"fedsql.epsilon must be a number > 0 (e.g. SET fedsql.epsilon = 0.5), "
                             f"got '{value[:40]}'")
    return repr(eps)
