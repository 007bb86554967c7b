"""Keyboard shortcuts that count every press.

A Streamlit button's ``shortcut`` is a trigger: a press sets it for one script run. Two presses that reach
the server while it is busy (a rerun still starting on a loaded machine) merge into one run, and one press
is lost. Here the browser keeps a log of the presses (one letter each, in order) and sends the whole log as
the component's state; the server handles the part of the log it has not handled yet. A merged update
therefore carries every press, and a press that arrives during a rerun is handled by the next one. Each run
tells the browser how many presses of its log are handled; where an update was lost on the way (seen on a busy
machine: the log held the presses, the page never reran), the browser sends the log again.

The log belongs to the page (one per browser tab, named by a random mount id): a reload starts a new log.
Presses are ignored while the listener is not mounted (another page is shown), while the user types in a
field, with a modifier key held, or when the key repeats. A page calls :func:`load_early` first, so that the
listener mounts as soon as it is drawn; the listener still shows the keys' hint itself, so the hint appears when
the keys work, and a press is never silently lost on a page that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

_JS = r"""
export default function (component) {
  const { setStateValue, data, parentElement } = component;
  const g = window.__fnlabKeys || (window.__fnlabKeys = {
    mount: Math.random().toString(36).slice(2), log: "", send: null, keys: "", ack: 0, seq: 0, tries: 0,
    timer: null });
  g.send = setStateValue;
  g.keys = String((data && data.keys) || "").toLowerCase();
  g.ack = Number(((data && data.handled) || {})[g.mount] || 0);  // presses the server has handled of this log
  if (g.ack >= g.log.length) g.tries = 0;
  if (!g.push) {
    // Send the whole log; if the server has not handled all of it a moment later (an update lost on the way,
    // which a busy machine showed), send it again, a few times at most. The server hands out each press once.
    g.push = () => {
      if (!g.send) return;
      g.seq += 1;
      g.send("presses", { mount: g.mount, log: g.log, seq: g.seq });
      clearTimeout(g.timer);
      g.timer = setTimeout(() => {
        if (g.send && g.ack < g.log.length && g.tries < 5) { g.tries += 1; g.push(); }
      }, 1500);
    };
  }
  if (!g.listener) {
    g.listener = (e) => {
      if (!g.send || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = (e.composedPath && e.composedPath()[0]) || e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName || ""))) return;
      const k = String(e.key || "").toLowerCase();
      if (k.length !== 1 || !g.keys.includes(k)) return;
      e.preventDefault();
      g.log += k;
      g.push();
    };
    document.addEventListener("keydown", g.listener);
  }
  const hint = parentElement && parentElement.querySelector(".fnlab-keys");
  if (hint) {  // the keys work from now on: show them (text nodes only, nothing parsed as HTML)
    hint.replaceChildren(document.createTextNode("Keys: "));
    ((data && data.hint) || []).forEach(([letter, meaning], i) => {
      if (i) hint.append(" · ");
      const b = document.createElement("b");
      b.textContent = String(letter);
      hint.append(b, " " + String(meaning));
    });
    hint.classList.add("on");
  }
  return () => { if (g.send === setStateValue) g.send = null; };
}
"""

# Hidden until the script above has mounted the listener; sized like a Streamlit caption.
_HTML = '<div class="fnlab-keys" data-testid="fnlab-keys"></div>'
_CSS = ".fnlab-keys { font-size: 0.875rem; opacity: 0.6; min-height: 1.4em; visibility: hidden; }" \
       " .fnlab-keys.on { visibility: visible; }"

_listener = st.components.v2.component("fnlab_key_log", html=_HTML, css=_CSS, js=_JS)


def new_presses(value: object, handled: dict[str, int]) -> str:
    """The presses of ``value`` (the browser's ``{"mount": id, "log": "fnn..."}``) not handled yet, oldest
    first; ``handled`` (mount id -> presses handled) is updated so each press is returned once. Anything
    that is not such a log returns ``""``."""
    if not isinstance(value, Mapping):
        return ""
    mount, log = value.get("mount"), value.get("log")
    if not isinstance(mount, str) or not isinstance(log, str):
        return ""
    done = handled.get(mount, 0)
    handled[mount] = max(done, len(log))
    return log[done:]


def presses(hint: Sequence[tuple[str, str]], *, key: str) -> str:
    """Mount the key listener for the letters of ``hint`` (``(letter, what it does)``, shown as "Keys: **F**
    false negative · ..." once the keys work) and return the presses not handled yet, oldest first (lower
    case). Call it once per run of the part that acts on them (a fragment reruns on each press)."""
    letters = "".join(letter.lower() for letter, _ in hint)
    # The presses are read before the listener mounts, so that it learns how many of its log this run handles
    # (it sends the log again where an update was lost). They count as handled only once the mount has returned:
    # a rerun request interrupts a run at a Streamlit call, and a press marked handled before one would be lost.
    state = st.session_state.get(key)
    value = state.get("presses") if isinstance(state, Mapping) else getattr(state, "presses", None)
    handled = st.session_state.setdefault(f"{key}__handled", {})
    after = dict(handled)
    new = new_presses(value, after)
    data = {"keys": letters, "hint": [[letter.upper(), meaning] for letter, meaning in hint], "handled": after}
    _listener(key=key, data=data, default={"presses": None}, on_presses_change=lambda: None)
    handled.update(after)
    return new


# No script: its only job is to be the page's first component (see load_early).
_early = st.components.v2.component("fnlab_keys_early", html="<span></span>", css=":host { display: none; }")


def load_early(*, key: str) -> None:
    """Call at the top of a page that mounts :func:`presses` later in its run: Streamlit loads the frontend code of
    its components the first time a page shows one, and a component drawn while that code loads waits to mount until
    the run's updates stop (measured in Chromium: the listener mounted 0.5-1.1 s after the review card was drawn,
    just before the run ended). Shown first, this hidden component makes the code load at the start of the run, so
    the listener, drawn just before the card, mounts with it (measured: 0.01-0.02 s after the card). Where that
    code still loads when the listener is drawn (a heavily loaded machine), the listener waits as before."""
    _early(key=key)
