"""Progress of long commands: a live bar on a terminal, a plain line every so often in a log or a pipe.

Background runs (``nohup adaconv evaluate ... > log 2>&1 &``) used to be silent for half an hour, because the
bars were switched off whenever stderr was not a terminal. Drawing tqdm's bar into a file gives one endless line
of carriage returns instead, so off a terminal the same bar is redrawn at most every ``LOG_INTERVAL`` seconds
as a whole line of its own.
"""

from __future__ import annotations

import math
import sys

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between lines off a terminal
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed} elapsed, {remaining} left{postfix}]"
_CURSOR_UP = "\x1b[A"  # what tqdm writes to move between stacked bars


class _LineWriter:
    """A file for tqdm that turns its in-place redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace(_CURSOR_UP, "").split("\r")[-1].strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, enabled: bool = True, stream=None, **options) -> tqdm:
    """A tqdm bar on ``stream`` (stderr): live on a terminal, a line per ``LOG_INTERVAL`` elsewhere, none if not
    ``enabled``. ``options`` are tqdm's (total, desc, unit, position, ...)."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if stream.isatty():
        return tqdm(iterable, file=stream, dynamic_ncols=True, **options)
    options.pop("position", None)  # stacked bars need cursor movement; lines from several ranks simply interleave
    options.setdefault("mininterval", LOG_INTERVAL)
    options.setdefault("maxinterval", math.inf)  # tqdm's monitor would redraw a stalled bar: a repeated line here
    options.setdefault("bar_format", LOG_FORMAT)
    return tqdm(iterable, file=_LineWriter(stream), **options)
