"""Job config files: every ``train`` option in a TOML file, with ``${NAME}`` placeholders.

A scheduled job is one config file plus the same code path as the CLI. Keys are the CLI
option names (``max_iter`` or ``max-iter``); flags given on the command line win over the
file. Placeholders such as ``${RUN_DATE}`` are filled from ``--param NAME=VALUE``, then
from the environment; ``RUN_DATE`` defaults to today's date (UTC). A key the CLI does not
know, or a placeholder nobody fills, is an error that names it.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import sys

from lrdask.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: str, known_keys: set[str], params: dict[str, str] | None = None) -> dict:
    """The file's options (placeholders filled), checked against ``known_keys``."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    for key in values:
        if key not in known_keys:
            close = difflib.get_close_matches(key, sorted(known_keys), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{path}: unknown key '{key}'{hint}")
    return fill_placeholders(values, placeholder_values(params), path)


def placeholder_values(params: dict[str, str] | None) -> dict[str, str]:
    today = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    return {"RUN_DATE": today, **os.environ, **(params or {})}


def fill_placeholders(value, values: dict[str, str], path: str = "config"):
    """Replace ``${NAME}`` in every string inside ``value`` (dicts and lists included)."""
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values, path) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(v, values, path) for v in value]
    if not isinstance(value, str):
        return value
    missing = [name for name in PLACEHOLDER.findall(value) if name not in values]
    if missing:
        raise ConfigError(
            f"{path}: placeholder ${{{missing[0]}}} has no value; "
            f"pass --param {missing[0]}=VALUE or set it in the environment"
        )
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``("A=1", "B=x")`` -> ``{"A": "1", "B": "x"}``, for --param and --storage-option."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out
