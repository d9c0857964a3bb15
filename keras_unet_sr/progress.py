"""Progress of long loops over files: a bar on a terminal, a line every few
items in a log, nothing with `--quiet`.

On a terminal (stderr is a TTY) `track` shows a tqdm bar with the count, the
rate and the time left, and routes the package's log lines above it; in a log
(a pipe or a file) it writes one line every `LOG_EVERY` items and one at the
end, which a log reader can follow without carriage returns.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

_T = TypeVar("_T")

LOG_EVERY = 10
_settings = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) every progress display of this process."""
    _settings["quiet"] = bool(quiet)


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def track(
    items: Iterable[_T],
    what: str,
    *,
    total: int | None = None,
    unit: str = "file",
    bar: bool = True,
) -> Iterator[_T]:
    """Yield `items`, showing how far the loop is.

    Args:
        items: The loop's items.
        what: What is being done, e.g. "predict".
        total: Number of items (default: `len(items)` where it has one).
        unit: What one item is, for the rate ("file" -> "file/s").
        bar: Show a bar on a terminal; False where another bar already
            shows there (TFDS' own), so only the log lines are written.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if _settings["quiet"]:
        yield from items
    elif _on_terminal():
        if not bar:
            yield from items
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        shown = tqdm(items, desc=what, total=total, unit=unit, file=sys.stderr)
        # Log lines (root's handler) are printed above the bar, not through it.
        with logging_redirect_tqdm(), contextlib.closing(shown):
            yield from shown
    else:
        yield from _log_lines(items, what, total, unit)


def _log_lines(
    items: Iterable[_T], what: str, total: int | None, unit: str
) -> Iterator[_T]:
    start = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        if done % LOG_EVERY == 0 and done != total:
            _log(what, done, total, unit, time.monotonic() - start)
    if done >= LOG_EVERY:
        _log(what, done, total, unit, time.monotonic() - start)


def _log(what: str, done: int, total: int | None, unit: str, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else float("inf")
    count = f"{done}/{total}" if total else f"{done}"
    line = f"{what}: {count} {unit}s, {rate:.2f} {unit}/s"
    if total and done < total and rate > 0:
        line += f", about {format_duration((total - done) / rate)} left"
    print(line, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """`42 s`, `5 min 03 s` or `1 h 07 min`: how run times are printed."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
