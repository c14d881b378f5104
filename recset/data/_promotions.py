"""The promotion calendar: which items a retailer promotes when (``promotions.parquet``).

A dataset directory may hold ``promotions.parquet`` (or ``.csv``) beside its catalog and
events: one row per promoted item and period, ``item_id``, ``start`` and ``end`` (the
period, ``start`` included, ``end`` excluded; epoch seconds or ISO 8601 like the events'
``timestamp``), an optional ``channel`` (``"display"``, ``"mailer"``, ...; default
``"promotion"``) and an optional ``reach`` in [0, 1] (the share of stores or customers the
promotion reaches; default 1). A retailer schedules its promotions ahead, so a ranker
feature may read the calendar at the time of the query (``cand_promo``) without reading
the future purchases.

:func:`promotion_steps` turns the calendar into a per-item step function of time that
:func:`promotion_at` reads for many (item, time) pairs at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from recset.data._format import (
    LoadReport,
    RowError,
    _as_str,
    _atomic_write,
    _blank,
    _Checker,
    _member,
    _parse_timestamps,
    _read_table,
    _write_quarantine,
)
from recset.data._ids import IdMap
from recset.errors import DataError

__all__ = [
    "PROMOTIONS_STEM",
    "PROMOTION_COLUMNS",
    "PromotionSteps",
    "Promotions",
    "promotion_at",
    "promotion_steps",
    "read_promotions",
    "write_promotions",
]

PROMOTIONS_STEM = "promotions"
"""File stem of the calendar in a dataset directory (``promotions.parquet`` or ``.csv``)."""

PROMOTION_COLUMNS = ("item_id", "start", "end", "channel", "reach")
"""The canonical columns; ``channel`` and ``reach`` are optional."""

DEFAULT_CHANNEL = "promotion"


@dataclass(frozen=True)
class Promotions:
    """A promotion calendar on dense item ids, one entry per (item, period, channel).

    Attributes
    ----------
    item : ndarray of int32
        Dense item id of each entry.
    start, end : ndarray of int64
        The period in epoch seconds, ``start`` included, ``end`` excluded (``end > start``).
    channel : ndarray of int16
        Index into ``channels``.
    channels : tuple of str
        The channel names.
    reach : ndarray of float32
        Share of the audience reached, in [0, 1].
    """

    item: NDArray[np.int32]
    start: NDArray[np.int64]
    end: NDArray[np.int64]
    channel: NDArray[np.int16]
    channels: tuple[str, ...]
    reach: NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.item)

    def select(self, mask: NDArray[np.bool_]) -> Promotions:
        """The entries where ``mask`` holds (the channel names kept)."""
        return Promotions(
            self.item[mask],
            self.start[mask],
            self.end[mask],
            self.channel[mask],
            self.channels,
            self.reach[mask],
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, items: IdMap) -> Promotions:
        """From checked canonical rows (every ``item_id`` in ``items``, ``start < end``)."""
        channel = frame["channel"] if "channel" in frame.columns else None
        names = (
            pd.Series(DEFAULT_CHANNEL, index=frame.index)
            if channel is None
            else _as_str(channel).fillna(DEFAULT_CHANNEL)
        )
        codes, uniques = pd.factorize(names, sort=True)
        reach = (
            frame["reach"].to_numpy(dtype=np.float32, na_value=1.0)
            if "reach" in frame.columns
            else np.ones(len(frame), np.float32)
        )
        return cls(
            item=items.index(_as_str(frame["item_id"])),
            start=frame["start"].to_numpy(dtype=np.int64),
            end=frame["end"].to_numpy(dtype=np.int64),
            channel=codes.astype(np.int16),
            channels=tuple(str(u) for u in uniques),
            reach=reach,
        )


PromotionSteps = tuple[
    NDArray[np.int64], NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]
]
"""What :func:`promotion_steps` returns: ``(keys, reach, channels, origin)``."""


def promotion_steps(promotions: Promotions, n_items: int) -> PromotionSteps:
    """The calendar as one step function of time per item.

    Returns ``(keys, reach, channels, origin)``: sorted ``item * span + (t - t0)`` keys of
    every time an item's promotions change, the total reach of the item's promotions active
    from that time on, the number of distinct channels active then, and ``origin = [t0,
    span]``. :func:`promotion_at` reads them.
    """
    if not len(promotions):
        empty = np.zeros(0, np.float32)
        return np.zeros(0, np.int64), empty, empty, np.array([0, 1], np.int64)
    t0 = int(promotions.start.min())
    span = int(promotions.end.max()) - t0 + 2  # every time in [t0 - 1, t_max] fits a key
    if n_items * span >= 2**62:
        raise DataError(
            f"promotion calendar: {n_items:,} items over {span:,} seconds do not fit one "
            "int64 key; shorten the calendar to the periods the data covers"
        )
    # +reach at each start, -reach at each end; per channel, to count the active ones
    n_ch = max(len(promotions.channels), 1)
    item = np.r_[promotions.item, promotions.item].astype(np.int64)
    t = np.r_[promotions.start, promotions.end] - t0 + 1
    delta = np.r_[promotions.reach, -promotions.reach].astype(np.float64)
    count = np.r_[np.ones(len(promotions)), -np.ones(len(promotions))]
    ch = np.r_[promotions.channel, promotions.channel].astype(np.int64)
    key = item * span + t
    uniq, inv = np.unique(key, return_inverse=True)
    item_of = uniq // span
    first = np.r_[True, item_of[1:] != item_of[:-1]]
    seg = np.cumsum(first) - 1  # the item's segment of the change points
    # running sums within each item (cumsum minus the sum before the item's first point)
    reach_delta = np.bincount(inv, weights=delta, minlength=len(uniq))
    reach_run = np.cumsum(reach_delta)
    reach_run -= np.r_[0.0, reach_run][np.flatnonzero(first)][seg]
    per_ch = np.zeros((len(uniq), n_ch))
    np.add.at(per_ch, (inv, ch), count)
    ch_run = np.cumsum(per_ch, axis=0)
    ch_run -= np.vstack([np.zeros((1, n_ch)), ch_run])[np.flatnonzero(first)][seg]
    active = (np.round(ch_run) > 0).sum(axis=1)
    reach_run = np.clip(np.round(reach_run, 6), 0.0, None)
    return (
        uniq.astype(np.int64),
        reach_run.astype(np.float32),
        active.astype(np.float32),
        np.array([t0, span], np.int64),
    )


def promotion_at(
    keys: NDArray[np.int64],
    values: NDArray[np.floating],
    origin: NDArray[np.int64],
    item: NDArray[np.integer],
    when: NDArray[np.integer],
) -> NDArray[np.float64]:
    """The step function of :func:`promotion_steps` (``values``: its reach or channel count)
    at each (item, time) pair; 0 where no promotion of the item is active then."""
    item = np.asarray(item, dtype=np.int64)
    out = np.zeros(len(item))
    if not len(keys) or not len(item):
        return out
    t0, span = int(origin[0]), int(origin[1])
    rel = np.clip(np.asarray(when, dtype=np.int64) - t0 + 1, 0, span - 1)
    q = item * span + rel
    pos = np.searchsorted(keys, q, side="right") - 1
    ok = (pos >= 0) & (keys[np.maximum(pos, 0)] // span == item)
    out[ok] = values[pos[ok]]
    return out


def _find(directory: Path) -> Path | None:
    for suffix in (".parquet", ".csv"):
        p = directory / f"{PROMOTIONS_STEM}{suffix}"
        if p.exists():
            return p
    return None


def read_promotions(
    directory: str | os.PathLike[str],
    items: IdMap,
    *,
    report: LoadReport | None = None,
    quarantine_dir: str | os.PathLike[str] | None = None,
    on_bad_rows: str = "error",
) -> Promotions | None:
    """The checked calendar of a dataset directory (or of a calendar file itself), or None
    when the directory holds none.

    Bad rows (a missing or unknown ``item_id``, an unparseable ``start`` / ``end``, ``end``
    not after ``start``, a ``reach`` outside [0, 1]) raise :class:`DataError` naming the file
    and rows with ``on_bad_rows="error"``; with ``"skip"`` they are written with their
    reasons to ``<quarantine_dir>/promotions.bad-rows.csv`` and left out. Rows and problems
    are added to ``report`` when given.
    """
    path = Path(directory) if Path(directory).is_file() else _find(Path(directory))
    if path is None:
        return None
    raw = _read_table(path, ("item_id", "channel")).reset_index(drop=True)
    missing = [c for c in ("item_id", "start", "end") if c not in raw.columns]
    if missing:
        raise DataError(
            f"{path}: missing required columns {missing}; found {list(raw.columns)} "
            "(a promotion calendar holds item_id, start, end and optionally channel, reach)"
        )
    checker = _Checker(path, len(raw))
    frame = raw.copy()
    blank = _blank(frame["item_id"])
    checker.flag(blank, "missing item_id")
    absent = ~blank & ~_member(frame["item_id"], pd.Series(items.values, dtype=object))
    checker.flag(absent, "item_id {v!r} is not in the catalog", frame["item_id"])
    for col in ("start", "end"):
        secs = _parse_timestamps(frame[col])
        checker.flag(
            np.isnan(secs),
            f"unparseable {col} {{v!r}}; expected whole epoch seconds or an ISO 8601 date",
            frame[col],
        )
        frame[col] = np.where(np.isnan(secs), 0, secs).astype(np.int64)
    checker.flag(frame["end"] <= frame["start"], "end is not after start")
    if "reach" in frame.columns:
        reach = pd.to_numeric(frame["reach"].astype(object), errors="coerce").astype("float64")
        present = ~_blank(frame["reach"])
        checker.flag(present & reach.isna(), "reach {v!r} is not a number", frame["reach"])
        checker.flag((reach < 0) | (reach > 1), "reach {v!r} is outside [0, 1]", frame["reach"])
        frame["reach"] = reach.fillna(1.0)
    n_bad = int(checker.bad.sum())
    errors: list[RowError] = checker.row_errors()
    if report is not None:
        report.rows_read[path.name] = len(raw)
        report.rows_kept[path.name] = len(raw) - n_bad
        report.errors.extend(errors)
    if quarantine_dir is not None:
        qdir = Path(quarantine_dir)
        if n_bad and on_bad_rows == "skip":
            q = _write_quarantine(raw, checker, qdir, PROMOTIONS_STEM)
            if report is not None:
                report.quarantine.append(q)
        else:
            (qdir / f"{PROMOTIONS_STEM}.bad-rows.csv").unlink(missing_ok=True)
    if n_bad and on_bad_rows == "error":
        first = "\n  ".join(str(e) for e in errors[:10])
        raise DataError(
            f"{path}: {n_bad:,} bad rows; first ones:\n  {first}\n"
            "Fix them, or pass --on-bad-rows skip to quarantine them and go on."
        )
    good = frame[~checker.bad] if n_bad else frame
    return Promotions.from_frame(good, items)


def write_promotions(frame: pd.DataFrame, out_dir: str | os.PathLike[str]) -> Path:
    """Write a calendar (the canonical columns) as ``promotions.parquet``, atomically."""
    missing = [c for c in ("item_id", "start", "end") if c not in frame.columns]
    if missing:
        raise DataError(f"promotion calendar: missing columns {missing}")
    cols = [c for c in PROMOTION_COLUMNS if c in frame.columns]
    out = frame[cols].reset_index(drop=True).copy()
    out["item_id"] = _as_str(out["item_id"])
    path = Path(out_dir) / f"{PROMOTIONS_STEM}.parquet"
    _atomic_write(path, lambda p: out.to_parquet(p, index=False))
    return path
