"""app/keys.py: the server handles each key press of the browser's log exactly once, in order."""

from hypothesis import given
from hypothesis import strategies as st

from app.keys import new_presses


def test_each_press_is_handled_once_even_when_updates_merge():
    handled: dict[str, int] = {}
    assert new_presses({"mount": "a", "log": "n"}, handled) == "n"
    # two presses reach the server in one update (a busy server merged them): both are handled
    assert new_presses({"mount": "a", "log": "nnf"}, handled) == "nf"
    assert new_presses({"mount": "a", "log": "nnf"}, handled) == ""  # the same state again: nothing new
    # a reload starts a new log: its presses count from its own start
    assert new_presses({"mount": "b", "log": "u"}, handled) == "u"
    # an older update arriving late never replays presses
    assert new_presses({"mount": "a", "log": "nn"}, handled) == ""


def test_anything_but_a_log_is_no_press():
    for value in (None, "nnn", {"log": "n"}, {"mount": "a"}, {"mount": 1, "log": "n"}, {"mount": "a", "log": 3}):
        assert new_presses(value, {}) == ""


@given(st.lists(st.text(alphabet="ftnu", max_size=4), max_size=8))
def test_any_split_of_a_log_into_updates_hands_out_the_log_once(chunks):
    handled: dict[str, int] = {}
    log, out = "", ""
    for chunk in chunks:
        log += chunk
        out += new_presses({"mount": "m", "log": log}, handled)
    assert out == log
