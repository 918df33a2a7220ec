"""Progress off a terminal: whole lines at most every interval, so background logs show where a long run is."""

import io

import pytest

from adaconv.progress import LOG_INTERVAL, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_every_redraw_is_a_whole_line():
    stream = io.StringIO()
    for _ in progress_bar(range(4), stream=stream, desc="score", unit="pair", mininterval=0):
        pass
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("score: 0/4 (0%)")
    assert lines[-1].startswith("score: 4/4 (100%)")
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and set(counts) == {0, 1, 2, 3, 4}


def test_off_a_terminal_lines_are_rate_limited():
    stream = io.StringIO()
    for _ in progress_bar(range(500), stream=stream, desc="work"):
        pass
    # the first draw and the closing one; 500 quick steps fit inside one interval
    assert LOG_INTERVAL >= 10
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == ["0/500", "500/500"]


def test_stacked_bar_position_is_dropped_off_a_terminal():
    stream = io.StringIO()
    for _ in progress_bar(range(2), stream=stream, desc="rank 1/2", position=1, mininterval=0):
        pass
    assert "\x1b" not in stream.getvalue() and stream.getvalue().count("\n") >= 2


def test_a_terminal_gets_the_live_bar():
    stream = FakeTerminal()
    for _ in progress_bar(range(3), stream=stream, desc="tiles", mininterval=0):
        pass
    assert "\r" in stream.getvalue() and "|" in stream.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO(), FakeTerminal()])
def test_disabled_writes_nothing(stream):
    assert list(progress_bar(range(3), stream=stream, enabled=False)) == [0, 1, 2]
    assert stream.getvalue() == ""
