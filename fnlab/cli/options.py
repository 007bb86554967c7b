"""The CLI's one ``KEY=VALUE`` grammar and its checks against the registries' parameter specs.

Every repeatable ``KEY=VALUE`` flag (``--option/-o``, ``--param/-p``, ``--loss-param``) is parsed by
:func:`parse_kv`: the value is read as JSON (``3``, ``0.1``, ``true``, ``null``, ``"text"``) and
otherwise kept as a string. :func:`check_params` then checks names and types against a registry's
:class:`~fnlab.samplers.registry.ParamSpec` list, so a wrong name or value is refused before any
work starts, with a message naming the flag, the parameter and what was expected.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

#: the flags that take KEY=VALUE (others, like --temperature, are named aliases of one key)
KV_FLAGS = ("--option", "--param", "--loss-param")


def parse_kv(text: str, flag: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)``; the value parsed as JSON where it is JSON, else a string.

    Raises:
        ValueError: no ``=`` or an empty key (the message names ``flag``).
    """
    if "=" not in text:
        raise ValueError(f"{flag} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"{flag} {text!r}: empty KEY; expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_kvs(texts: Iterable[str], flag: str) -> dict[str, Any]:
    """Many ``KEY=VALUE`` texts -> a dict (a later key wins)."""
    return dict(parse_kv(t, flag) for t in texts)


def _typed(value: Any, spec: Any, where: str) -> Any:
    choices = getattr(spec, "choices", None)
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if getattr(spec, "optional", False):
            return None
        raise ValueError(f"{where}: expected {'an integer' if spec.integer else 'a number'}, got {value!r}")
    if spec.integer:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def check_params(params: Mapping[str, Any], specs: Iterable[Any], *, owner: str,
                 flags: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None,
                 strict: bool = True) -> dict[str, Any]:
    """Check ``params`` against ``specs`` (``ParamSpec``: ``name``, ``integer``, ``optional``, ``choices``).

    Args:
        owner: what takes the parameters, for messages (``"loss 'dcl'"``).
        flags: the flag each key came from (default ``--param``), for messages.
        extra: further accepted names (not type-checked) with a one-line note each.
        strict: refuse names that are neither in ``specs`` nor in ``extra``.

    Returns:
        the parameters with values converted (integers stay int, numbers become float, choices stay strings).

    Raises:
        ValueError: an unknown name (listing the valid ones) or a value of the wrong type.
    """
    specs = {s.name: s for s in specs}
    extra = dict(extra or {})
    flags = dict(flags or {})
    out: dict[str, Any] = {}
    for key, value in params.items():
        flag = flags.get(key, "--param")
        label = f"{flag} {key}" if flag in KV_FLAGS else flag
        if key in specs:
            out[key] = _typed(value, specs[key], f"{label}={value!r} ({owner})")
        elif key in extra or not strict:
            out[key] = value
        else:
            valid = sorted(specs) + sorted(extra)
            hint = f"valid names: {', '.join(valid)}" if valid else "it takes no parameters"
            near = [v for v in valid if v.replace("_", "-") == key or v == key.replace("-", "_")]
            if near:
                hint += f" (did you mean {near[0]!r}?)"
            raise ValueError(f"{label}: {owner} has no parameter {key!r}; {hint}")
    return out


def integer(low: int | None = None, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (either end optional); a clear usage error otherwise."""
    span = _span(low, high, "an integer")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {span}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {span}, got {value}")
        return value

    parse.__name__ = span
    return parse


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False):
    """An argparse type: a finite number in the given range (``low_open``/``high_open``: the end excluded);
    ``nan``, ``inf`` and text are refused with a clear usage error."""
    span = _span(low, high, "a finite number", low_open, high_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {span}, got {text!r}") from None
        bad = not math.isfinite(value)
        bad |= low is not None and (value <= low if low_open else value < low)
        bad |= high is not None and (value >= high if high_open else value > high)
        if bad:
            raise argparse.ArgumentTypeError(f"expected {span}, got {text!r}")
        return value

    parse.__name__ = span
    return parse


def _span(low, high, what: str, low_open: bool = False, high_open: bool = False) -> str:
    def fmt(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{fmt(low)}, {fmt(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {fmt(low)}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {fmt(high)}"
    return what


def registry_names(module: str, attr: str = "available") -> str:
    """Names from a registry for help texts (``fnlab.samplers.available()``, ``fnlab.posterior.estimators()``)."""
    import importlib

    try:
        return ", ".join(getattr(importlib.import_module(module), attr)())
    except Exception:  # noqa: BLE001 - help must not fail; the command itself reports errors
        return "see " + module
