"""The backtest's plots as PNG bytes: few lines per plot, each with its own colour, line
style and marker, so they read in print and for colour-blind readers."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from recset.eval._result import BacktestResult, key_systems
from recset.eval.metrics import KS

STYLES = (
    ("#1b6ca8", "-", "o"),
    ("#d1495b", "--", "s"),
    ("#2e933c", "-.", "^"),
    ("#8c564b", ":", "D"),
    ("#edae49", (0, (5, 1)), "v"),
)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_plots(
    result: BacktestResult, comparison: dict[str, Any] | None = None
) -> dict[str, tuple[bytes, str]]:
    """``{file name: (png, caption)}`` of every plot the result has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, tuple[bytes, str]] = {}
    names = key_systems(result)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (color, ls, mk), name in zip(STYLES, names, strict=False):
        item = result.systems[name]["item"]
        ax.plot(
            KS,
            [item.get(f"hit@{k}", np.nan) for k in KS],
            color=color,
            linestyle=ls,
            marker=mk,
            label=name,
            linewidth=2,
        )
    ax.set(xlabel="k", ylabel="item Hit@k", xticks=KS)
    ax.set_title(f"Hit@k — {result.dataset} ({result.queries:,} queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out["hit_at_k.png"] = (_png(fig), "Item Hit@k of the mix, the ranker and the best baselines")

    if result.per_category:
        rows = result.per_category[:8]
        fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) * len(names[:3]) / 2 + 1.5))
        y = np.arange(len(rows))
        h = 0.8 / len(names[:3])
        for j, ((color, _, _), name) in enumerate(zip(STYLES, names[:3], strict=False)):
            vals = [r["hit@10"][name] for r in rows]
            ax.barh(y + j * h, vals, h, color=color, label=name, hatch=("", "//", "..")[j])
        ax.set_yticks(y + h * (len(names[:3]) - 1) / 2, [_short(r["category"]) for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("item Hit@10")
        ax.set_title("Largest categories")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=8)
        out["categories.png"] = (_png(fig), "Item Hit@10 in the largest categories")

    abl = [n for n in result.systems if n == "mix" or n.startswith(("only-", "mix-minus-"))]
    if len(abl) > 1:
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(abl) + 1))
        vals = [result.systems[n]["item"].get("hit@10", 0.0) for n in abl]
        colors = ["#d1495b" if n == "mix" else "#1b6ca8" for n in abl]
        ax.barh(abl[::-1], vals[::-1], color=colors[::-1])
        ax.set_xlabel("item Hit@10")
        ax.set_title(f"Ablation — {result.dataset}")
        ax.grid(alpha=0.3, axis="x")
        out["ablation.png"] = (_png(fig), "Each source alone and the mix without it")

    if result.by_cart_size:
        labels = list(result.by_cart_size)
        fig, ax = plt.subplots(figsize=(6, 4))
        for (color, ls, mk), name in zip(STYLES, names, strict=False):
            vals = [result.by_cart_size[lb]["hit@10"][name] for lb in labels]
            ax.plot(labels, vals, color=color, linestyle=ls, marker=mk, label=name)
        ax.set(xlabel="cart size", ylabel="item Hit@10", title="Hit@10 by cart size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out["cart_size.png"] = (_png(fig), "Item Hit@10 against the number of items in the cart")

    if result.rerank_curve:
        sizes = [int(n) for n in result.rerank_curve]
        fig, ax = plt.subplots(figsize=(6, 4))
        for (color, ls, mk), metric in zip(STYLES, ("hit@1", "hit@3", "hit@10"), strict=False):
            vals = [result.rerank_curve[str(n)][metric] for n in sizes]
            ax.plot(sizes, vals, color=color, linestyle=ls, marker=mk, label=metric)
        ax.set(xlabel="re-rank list size N", ylabel="item Hit@k", xticks=sizes)
        ax.set_title("Personalized re-ranking against N")
        ax.grid(alpha=0.3)
        ax.legend()
        out["rerank_n.png"] = (_png(fig), "Personalized re-ranking: Hit@k against the list size N")

    if comparison and "mix" in comparison["systems"]:
        ref = comparison["reference"]
        others = [c["name"] for c in comparison["configs"][1:]][:4]
        entries = [e for e in comparison["categories"] if e.get("systems")][:12]
        entries = [{"key": "(all queries)", **comparison["all_queries"]}] + entries
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(entries) * max(len(others), 1) + 1.5))
        y = np.arange(len(entries))
        h = 0.8 / max(len(others), 1)
        for j, ((color, _, mk), o) in enumerate(zip(STYLES, others, strict=False)):
            cells = [e["systems"]["mix"][o] for e in entries]
            d = np.array([c["diff"] for c in cells])
            err = np.array(
                [[c["diff"] - c["low"] for c in cells], [c["high"] - c["diff"] for c in cells]]
            )
            ax.errorbar(
                d, y + j * h, xerr=err, fmt=mk, color=color, capsize=3, label=f"{o} − {ref}"
            )
        ax.axvline(0, color="#555", linewidth=1)
        ax.set_yticks(y + h * (len(others) - 1) / 2, [_short(e["key"]) for e in entries])
        ax.invert_yaxis()
        ax.set_xlabel("difference in item Hit@10 of the mix (95% CI)")
        ax.set_title("Configs side by side")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=8)
        out["compare.png"] = (_png(fig), "Difference of each config's mix from the reference")
    return out


def _short(label: str, n: int = 40) -> str:
    return label if len(label) <= n else "…" + label[-(n - 1) :]
