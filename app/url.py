"""The view in the URL: page, run, split, direction, query, point and each page's main controls.

A reload or a shared link reopens exactly the view it was copied from. The page is the URL's path
(``/rankings``; ``?page=rankings`` works too); everything else is a query parameter.

How: :func:`read` copies the URL's parameters once per session, before anything can clear them (a page
switch does). A widget bound to a parameter is drawn through :func:`bind`, which gives it its value from
that copy the first time it is drawn (when the value parses and is allowed), else its default, through
``st.session_state`` (so the widget itself is created without a ``value``). After drawing, a page calls
:func:`publish` with its parameters; the URL then holds the shared ones (run, split, direction) and that
page's, and nothing stale from another page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import streamlit as st

_READ = "_fn_url_read"
_PENDING = "_fn_url_pending"
#: parameters every page carries (set by the sidebar)
SHARED = ("run", "split", "direction")


def read() -> None:
    """Once per session: keep a copy of the URL's parameters for :func:`bind` and :func:`take`."""
    if st.session_state.get(_READ):
        return
    st.session_state[_READ] = True
    st.session_state[_PENDING] = {k: st.query_params.get(k) for k in st.query_params}


def take(name: str) -> str | None:
    """The URL's value of ``name`` from the session's first load, once (then ``None``)."""
    pending = st.session_state.get(_PENDING) or {}
    value = pending.pop(name, None)
    return None if value is None else str(value)


def peek(name: str) -> str | None:
    """The URL's value of ``name`` from the session's first load, without taking it."""
    value = (st.session_state.get(_PENDING) or {}).get(name)
    return None if value is None else str(value)


# ---------------------------------------------------------------- parsers: text -> value, or ValueError
def as_int(text: str) -> int:
    return int(text)


def as_float(text: str) -> float:
    return float(text)


def as_str(text: str) -> str:
    return str(text)


def as_list(text: str) -> list[str]:
    return [t for t in str(text).split(",") if t]


def as_range(text: str) -> tuple[float, float]:
    lo, hi = (float(t) for t in str(text).split(","))
    return (lo, hi) if lo <= hi else (hi, lo)


def fmt(value: Any) -> str:
    """A widget value as URL text (lists and ranges comma-separated, floats without noise)."""
    if isinstance(value, list | tuple):
        return ",".join(fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def bind(key: str, name: str, default: Any, parse: Callable[[str], Any] = as_str,
         allowed: Callable[[Any], bool] | Iterable | None = None) -> None:
    """Give widget ``key`` its value before it is drawn: the URL's ``name`` on the session's first visit (when
    it parses and is ``allowed``), else what it holds already, else ``default``.

    ``allowed``: a predicate, or the collection of allowed values (lists: every element must be allowed).
    """
    text = take(name)
    if text is not None:
        try:
            value = parse(text)
        except (TypeError, ValueError):
            value = None
        if value is not None and _ok(value, allowed):
            st.session_state[key] = value
            return
    if key not in st.session_state or not _ok(st.session_state[key], allowed):
        st.session_state[key] = default


def _ok(value: Any, allowed) -> bool:
    if allowed is None:
        return True
    if callable(allowed):
        try:
            return bool(allowed(value))
        except (TypeError, ValueError):
            return False
    pool = list(allowed)
    if isinstance(value, list):
        return all(v in pool for v in value)
    return value in pool


def publish(params: Mapping[str, Any] | None = None) -> None:
    """Make the URL hold the shared parameters and ``params`` (``None`` values left out), nothing else.

    Written only when something changed, so an unchanged view sends nothing.
    """
    want = {k: st.query_params.get(k) for k in SHARED if st.query_params.get(k) is not None}
    for k, v in (params or {}).items():
        if v is not None:
            want[k] = fmt(v)
    have = {k: st.query_params.get(k) for k in st.query_params}
    if have != want:
        st.query_params.from_dict(want)


def update(params: Mapping[str, Any]) -> None:
    """Set (or, with ``None``, remove) only these parameters: what a fragment of a page publishes, leaving the
    rest of the page's parameters as the full run set them."""
    for k, v in params.items():
        if v is None:
            if k in st.query_params:
                del st.query_params[k]
        elif st.query_params.get(k) != fmt(v):
            st.query_params[k] = fmt(v)


def set_shared(**values: Any) -> None:
    """Set the shared parameters (the sidebar's run, split, direction)."""
    for k, v in values.items():
        if v is None:
            continue
        if st.query_params.get(k) != fmt(v):
            st.query_params[k] = fmt(v)
