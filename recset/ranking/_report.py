"""Feature-importance report of a trained ranker (Markdown table and PNG bar plot)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

_log = logging.getLogger(__name__)


def write_importance(importance: list[tuple[str, float]], out_dir: Path) -> list[Path]:
    """Write ``importance.md`` (and ``importance.png`` when matplotlib is installed)."""
    from recset.storage import atomic_write_bytes, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(g for _, g in importance) or 1.0
    lines = ["| feature | gain | share |", "|---|---:|---:|"]
    lines += [f"| {n} | {g:.1f} | {g / total:.1%} |" for n, g in importance]
    written = [atomic_write_text(out_dir / "importance.md", "\n".join(lines) + "\n")]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _log.warning("matplotlib is not installed: no importance plot")
        return written
    top = importance[:20][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1))
    ax.barh([n for n, _ in top], [g / total for _, g in top])
    ax.set_xlabel("share of total gain")
    ax.set_title("Ranker feature importance (gain)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(atomic_write_bytes(out_dir / "importance.png", buf.getvalue()))
    return written
