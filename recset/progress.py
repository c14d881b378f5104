"""Build progress and memory: one log line per stage with its time and memory, and the budget.

A large build spends minutes in a few stages; :func:`stage` logs where (on the
``recset.progress`` logger, at INFO), with the process's resident memory at the end of the
stage and its peak so far::

    fit co_purchase: 1.9 s, rss 2.41 GiB, peak 2.87 GiB

Long loops report through :class:`Ticker`: a plain line every few seconds (what a log file
or a pipe wants), or a live tqdm bar when asked and stderr is a terminal.

:func:`parse_memory` reads a budget such as ``"4GiB"`` (``recset build --max-memory``, the
``[build] max_memory`` setting); :func:`available_memory` is what is left of it now.
Memory is read from ``/proc/self/status`` where there is one (Linux), else from
:func:`resource.getrusage` (peak only).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from pydantic import ByteSize, TypeAdapter, ValidationError

from recset.errors import ConfigError

_log = logging.getLogger("recset.progress")

_GIB = float(1 << 30)
_BYTES = TypeAdapter(ByteSize)


def memory() -> tuple[int, int]:
    """``(rss, peak)`` of this process in bytes (rss is 0 where it cannot be read)."""
    rss = peak = 0
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    if not peak:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = kib * (1 if sys.platform == "darwin" else 1024)
    return rss, peak


def format_memory() -> str:
    """``"rss 1.20 GiB, peak 1.31 GiB"`` for this process now."""
    rss, peak = memory()
    head = f"rss {rss / _GIB:.2f} GiB, " if rss else ""
    return f"{head}peak {peak / _GIB:.2f} GiB"


def parse_memory(value: str | int | None) -> int | None:
    """Bytes of a memory budget: ``"4GiB"``, ``"512MiB"``, ``"6GB"``, ``"4 G"`` or an int.

    ``None`` (no budget) stays None. Binary units (KiB, MiB, GiB) are powers of 1024,
    decimal ones (KB, MB, GB) powers of 1000.

    Raises
    ------
    ConfigError
        When the value is not a size, or not positive.
    """
    if value is None:
        return None
    try:
        size = int(_BYTES.validate_python(value))
    except ValidationError:
        raise ConfigError(
            f"The memory budget must be a size such as '4GiB', '512MiB' or a number of bytes. "
            f"Got {value!r} instead."
        ) from None
    if size <= 0:
        raise ConfigError(f"The memory budget must be positive. Got {value!r} instead.")
    return size


def available_memory(budget: int | None) -> int | None:
    """Bytes of ``budget`` not yet used by this process (never negative); None: no budget."""
    if budget is None:
        return None
    rss, peak = memory()
    return max(budget - (rss or peak), 0)


def release_free_memory() -> None:
    """Hand memory that is freed but still held by the allocators back to the system.

    Arrow's pool (mimalloc or jemalloc) keeps the pages of freed buffers for reuse, and so
    does glibc's malloc: after the event log is read and indexed, the freed frames stay
    resident (1.2 GiB of 2.9 at 1M items / 10M events), counted against the budget and
    never used again. Call after a large, one-off allocation is freed.
    """
    pa = sys.modules.get("pyarrow")  # only when it is loaded: recset.progress stays light
    if pa is not None:
        pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


@contextmanager
def stage(label: str) -> Iterator[None]:
    """Log ``label`` with its duration and the memory at its end (INFO, ``recset.progress``)."""
    t0 = time.perf_counter()
    _log.debug("%s ...", label)
    yield
    _log.info("%s: %.1f s, %s", label, time.perf_counter() - t0, format_memory())


class Ticker:
    """Progress of a loop over ``total`` units: plain log lines, or a bar on a terminal.

    Parameters
    ----------
    label : str
        What is being done ("precompute lists").
    total : int
        Units of work (seeds, rows).
    bar : bool
        Show a live tqdm bar when stderr is a terminal (plain lines otherwise).
    every : float
        Seconds between plain lines.
    """

    def __init__(self, label: str, total: int, *, bar: bool = False, every: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.every = every
        self._t0 = self._last = time.perf_counter()
        self._bar = None
        if bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label, unit_scale=True)

    def __enter__(self) -> Ticker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, n: int) -> None:
        """``n`` more units are done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.every and self.done < self.total:
            self._last = now
            _log.info(
                "%s: %d/%d (%.0f%%) in %.0f s, %s",
                self.label,
                self.done,
                self.total,
                100.0 * self.done / max(self.total, 1),
                now - self._t0,
                format_memory(),
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
