"""Progress of long evaluation steps: a bar on a terminal, a few plain lines otherwise.

A bar redrawn with carriage returns is unreadable in a log file or a CI console, so when
stderr is not a terminal a loop reports about every quarter, and a stage prints one line when
it starts and one when it ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def _tty() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def stage(
    label: str, enabled: bool, timings: dict[str, float] | None = None, key: str | None = None
) -> Iterator[None]:
    """Announce a stage and its duration (when ``enabled``); record it in ``timings[key]``."""
    if enabled:
        _say(f"  - {label} ...")
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    if timings is not None and key is not None:
        timings[key] = timings.get(key, 0.0) + dt
    if enabled:
        _say(f"    {label}: done in {dt:.1f}s")


def progress(items: Iterable[T], desc: str, enabled: bool, total: int | None = None) -> Iterator[T]:
    """``items`` with a tqdm bar on a terminal, else a plain line about every 25%."""
    if not enabled:
        yield from items
        return
    if _tty():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, total=total)
        return
    seq = list(items) if total is None else items
    n = total if total is not None else len(seq)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    step = max(1, -(-n // 4))
    for i, item in enumerate(seq, 1):
        yield item
        if i % step == 0 or i == n:
            _say(f"    {desc}: {i}/{n} ({time.perf_counter() - t0:.0f}s)")
