"""Fault injection for the kill tests: ``RECSET_FAULT=<phase>`` ends the process at a phase.

A release is written in phases (fit, catalog, artifact, rename, activate); the reliability
tests run ``recset build`` in a subprocess with ``RECSET_FAULT`` set to one of them and check
that the previous version still serves identical answers and that the next build succeeds.
The process ends with :func:`os._exit`, like a kill: no ``finally`` block, no ``atexit``
handler and no open transaction gets to run or commit.
"""

from __future__ import annotations

import os
import sys
from typing import Final

FAULT_ENV: Final[str] = "RECSET_FAULT"
"""Environment variable naming the phase at which the process dies."""

FAULT_EXIT_CODE: Final[int] = 86
"""Exit status of a process ended by :func:`fault_point`."""

FAULT_PHASES: Final[tuple[str, ...]] = ("fit", "catalog", "artifact", "activate", "rename")
"""The named phases, in the order a build passes them:

- ``fit``: the sources are fitted, nothing is written yet;
- ``catalog``: the new catalog is committed to ``catalog_release`` (not yet live);
- ``artifact``: the version's files are written to a temporary directory (not yet checked);
- ``activate``: inside the activation transaction: the version's row is inserted, the
  previous version retired and the new catalog copied in, nothing committed;
- ``rename``: then the directory is renamed to ``<name>/v<N>``, still before the commit.

"""

PRUNE_FAULT_PHASES: Final[tuple[str, ...]] = ("prune", "pruned")
"""The phases of ``recset prune``, per removed version: ``prune`` inside the transaction that
removes its rows (artifact, saved catalog, recall lists, files kept in the database), before
the commit; ``pruned`` after the commit, before its directory is removed."""


def fault_point(phase: str) -> None:
    """End the process now (exit status 86) if ``RECSET_FAULT`` names ``phase``."""
    if os.environ.get(FAULT_ENV) == phase:
        sys.stderr.write(f"recset: fault injected at phase {phase!r} ({FAULT_ENV})\n")
        sys.stderr.flush()
        os._exit(FAULT_EXIT_CODE)


__all__ = ["FAULT_ENV", "FAULT_EXIT_CODE", "FAULT_PHASES", "PRUNE_FAULT_PHASES", "fault_point"]
