"""The backtest report: ``metrics.json``, a short ``report.md`` and a self-contained
``report.html`` (plots inline), written from one list of blocks so that both say the same.

Order: a summary (the best system against the best baseline, with intervals and a verdict
computed from the numbers), the setup (split, configs), the side-by-side comparison of configs,
results, per category, per cart size, ablations, the ranker, sample lists (HTML), the configs'
full text.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recset.eval._compare import NamedConfig
from recset.eval._plots import render_plots
from recset.eval._result import BacktestResult, key_systems, summary_systems
from recset.eval.metrics import KS

LEVELS = ("item", "type", "category")


@dataclass
class Block:
    """One piece of the report: a heading, a paragraph, a list, a table, an image, a
    preformatted text; ``html_only`` blocks are left out of report.md."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    html_only: bool = False
    md_only: bool = False


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.{nd}f}"


def _signed(v: float | None, nd: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:+.{nd}f}"


def _ci(lo: float | None, hi: float | None, nd: int = 3) -> str:
    if lo is None or hi is None or lo != lo:
        return "–"
    return f"[{lo:+.{nd}f}, {hi:+.{nd}f}]"


def verdict(result: BacktestResult) -> list[str]:
    """Plain sentences on what the numbers say, computed from ``result.summary``."""
    s = result.summary
    out = []
    bvb = s.get("best_vs_baseline")
    if bvb:
        d = bvb["hit@10"]
        a, b = bvb["a"], bvb["b"]
        if d["low"] > 0:
            how = f"beats the best baseline, {a}, by {_signed(d['diff'])} item Hit@10"
        elif d["high"] < 0:
            how = f"loses to the best baseline, {a}, by {_signed(-d['diff'])} item Hit@10"
        else:
            how = f"is not distinguishable from the best baseline, {a} ({_signed(d['diff'])})"
        out.append(
            f"The best recset system, {b} ({_f(d['b'])}), {how} "
            f"(95% CI of the difference {_ci(d['low'], d['high'])})."
        )
        out += _repeat_sentence(bvb, "that gain")
    rvm = s.get("ranker_vs_mix")
    if rvm:
        d = rvm["hit@10"]
        sig = "significant" if d["low"] > 0 or d["high"] < 0 else "not significant"
        out.append(
            f"The ranker changes the mix's item Hit@10 by {_signed(d['diff'])} "
            f"({_ci(d['low'], d['high'])}, {sig})."
        )
        out += _repeat_sentence(rvm, "the ranker's gain")
    reps = s.get("hits_from_repeats") or {}
    if reps:
        parts = [f"{n}: {v:.0%}" for n, v in reps.items()]
        out.append(
            "Share of the hit queries hit only through an item the user had bought before: "
            + "; ".join(parts)
            + "."
        )
    return out


def _repeat_sentence(pair: dict[str, Any], what: str) -> list[str]:
    share = pair.get("repeat_share")
    dn = pair["new_items_hit@10"]
    if share is None:
        return []
    new = f"on items new to the user alone the difference is {_signed(dn['diff'])} " + _ci(
        dn["low"], dn["high"]
    )
    if share >= 0.5:
        lead = f"{share:.0%} of {what} is repeat purchases (items the user had bought before)"
        tail = ": it is mostly 'buy again'"
    elif share <= 0:
        lead = f"None of {what} is repeat purchases"
        tail = (
            ": it is all on items new to the user, where the difference is even larger "
            "(the other system's hits lean on items the user had bought before)"
        )
    else:
        lead = f"{max(share, 0.0):.0%} of {what} is repeat purchases"
        tail = ": most of it is on items new to the user"
    return [f"{lead}{tail}; {new}."]


def _summary_blocks(result: BacktestResult) -> list[Block]:
    blocks = [Block("h2", "Summary"), Block("list", items=verdict(result))]
    rows = []
    for name in key_systems(result):
        ci = result.confidence.get(name)
        m = result.systems[name]["item"]
        rows.append(
            [
                name,
                result.systems[name]["kind"],
                _f(m.get("hit@10")),
                _ci(ci["low"], ci["high"]).replace("+", "") if ci else "–",
                _f(m.get("explore_hit@10")),
                _f(m.get("repeat_hit@10")),
            ]
        )
    blocks.append(
        Block(
            "table",
            header=["system", "kind", "hit@10", "95% CI", "new-item hit@10", "repeat hit@10"],
            rows=rows,
        )
    )
    return blocks


def _setup_blocks(
    result: BacktestResult, configs: Sequence[NamedConfig], n_queries: int
) -> list[Block]:
    rows = [["dataset", result.dataset], ["queries", f"{n_queries:,}"]]
    for k, v in result.split.items():
        if k == "baseline_tuning":  # a table of its own (_tuning_blocks)
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={_fmt_value(b)}" for a, b in v.items())
        elif k == "t" and isinstance(v, int):
            k, v = "test from", _date(v)
        rows.append([k.replace("_", " "), _fmt_value(v)])
    blocks = [Block("h2", "Setup"), Block("table", header=["", ""], rows=rows)]
    blocks.append(
        Block(
            "table",
            header=["config", "path", "sha256"],
            rows=[
                [c.name, c.path or "(built-in defaults)", (c.sha256 or "–")[:16]] for c in configs
            ],
        )
    )
    return blocks


def _tuning_blocks(result: BacktestResult) -> list[Block]:
    """Each baseline's hyper-parameters chosen on the validation window, with its Hit@10."""
    tuning = result.split.get("baseline_tuning") or {}
    if not tuning:
        return []
    rows = [
        [
            name,
            ", ".join(f"{k}={v}" for k, v in t["params"].items()) or "–",
            f"{t['validation_hit@10']:.4f}",
            str(len(t["grid"])),
        ]
        for name, t in tuning.items()
    ]
    return [
        Block("h2", "Baseline hyper-parameters (chosen on a validation window cut from training)"),
        Block(
            "table",
            header=["baseline", "chosen", "validation hit@10", "combinations tried"],
            rows=rows,
        ),
    ]


def _date(t: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _compare_blocks(comparison: dict[str, Any]) -> list[Block]:
    ref = comparison["reference"]
    names = [c["name"] for c in comparison["configs"]]
    others = names[1:]
    blocks = [
        Block("h2", "Side by side"),
        Block(
            "p",
            f"Every config on the same queries; differences are item Hit@10 against {ref!r} "
            "with paired 95% bootstrap intervals (baskets resampled). A difference is "
            "significant when its interval excludes 0 (marked *).",
        ),
    ]
    for system in comparison["systems"]:
        header = ["category", "overridden by", "queries", ref]
        for o in others:
            header += [o, f"{o} − {ref}", "95% CI"]
        rows = []
        entries = [{"key": "(all queries)", "overridden_by": [], **comparison["all_queries"]}]
        for e in entries + comparison["categories"]:
            row = [e["key"], ", ".join(e["overridden_by"]) or "–", f"{e['queries']:,}"]
            cells = (e.get("systems") or {}).get(system)
            if cells is None:
                rows.append(row + ["–"] * (1 + 3 * len(others)))
                continue
            row.append(_f(cells[ref]["hit@10"]))
            for o in others:
                c = cells[o]
                star = "*" if c["low"] > 0 or c["high"] < 0 else ""
                row += [_f(c["hit@10"]), _signed(c["diff"]) + star, _ci(c["low"], c["high"])]
            rows.append(row)
        blocks += [Block("h3", f"{system}: item Hit@10"), Block("table", header=header, rows=rows)]
    return blocks


def format_table(
    result: BacktestResult, level: str = "item", systems: Sequence[str] | None = None
) -> str:
    """A Markdown table of one level's metrics for (some of) the systems."""
    return _md_table(*_metrics_table(result, level, systems))


def _metrics_table(
    result: BacktestResult, level: str, systems: Sequence[str] | None
) -> tuple[list[str], list[list[str]]]:
    cols = [f"hit@{k}" for k in KS] + ["ndcg@10", "mrr", "explore_hit@10", "repeat_hit@10"]
    rows = []
    for name, m in result.systems.items():
        if systems is not None and name not in systems:
            continue
        vals = m.get(level)
        if not isinstance(vals, dict):
            continue
        rows.append([name, m["kind"]] + [_f(vals.get(c), 4) for c in cols])
    return ["system", "kind"] + cols, rows


def _results_blocks(result: BacktestResult) -> list[Block]:
    names = summary_systems(result)
    header, rows = _metrics_table(result, "item", names)
    blocks = [
        Block("h2", "Results"),
        Block(
            "p",
            "Item level; explore = targets the user never bought before, repeat = targets "
            "they had. coverage@10: share of seeds with 10 candidates from behaviour sources "
            "(for baselines: of their own).",
        ),
        Block("table", header=header, rows=rows),
    ]
    levels = [lv for lv in LEVELS if any(lv in m for m in result.systems.values())]
    rows = []
    for n in names:
        m = result.systems[n]
        rows.append(
            [n]
            + [_f(m.get(lv, {}).get("hit@10")) for lv in levels]
            + [
                _f(m.get("coverage@10")),
                _f(m.get("type_diversity@10"), 2),
                _f(m.get("catalog_coverage@10"), 4),
            ]
        )
    blocks.append(
        Block(
            "table",
            header=["system"]
            + [f"{lv} hit@10" for lv in levels]
            + ["coverage@10", "types in top 10", "catalog coverage@10"],
            rows=rows,
        )
    )
    return blocks


def _category_blocks(
    result: BacktestResult, overridden: Sequence[str], top: int = 10
) -> list[Block]:
    if not result.per_category:
        return []
    names = key_systems(result)
    rows = []
    for i, row in enumerate(result.per_category):
        if i >= top and not any(
            row["category"] == k or row["category"].startswith(k + " > ") for k in overridden
        ):
            continue
        rows.append(
            [row["category"], f"{row['queries']:,}"] + [_f(row["hit@10"][n]) for n in names]
        )
    n = len(result.per_category)
    return [
        Block("h2", "Per category"),
        Block(
            "p",
            f"Item Hit@10 by the seed's category: the {min(top, n)} largest of {n} categories "
            "with >= 20 queries, and any category a config overrides (metrics.json has all).",
        ),
        Block("table", header=["category", "queries"] + names, rows=rows),
    ]


def _cart_blocks(result: BacktestResult) -> list[Block]:
    if not result.by_cart_size:
        return []
    names = key_systems(result)
    rows = [
        [label, f"{v['queries']:,}"] + [_f(v["hit@10"][n]) for n in names]
        for label, v in result.by_cart_size.items()
    ]
    return [
        Block("h2", "Per cart size"),
        Block(
            "p",
            "The first items of each test basket (time order) are the cart, served like "
            "Engine.recommend_basket; the rest of the basket are the targets. Item Hit@10.",
        ),
        Block("table", header=["cart size", "queries"] + names, rows=rows),
    ]


def _ablation_blocks(result: BacktestResult) -> list[Block]:
    names = [n for n in result.systems if n.startswith(("only-", "mix-minus-"))]
    if not names or "mix" not in result.systems:
        return []
    mix = result.systems["mix"]["item"]["hit@10"]
    rows = [
        [
            n,
            _f(result.systems[n]["item"]["hit@10"]),
            _signed(result.systems[n]["item"]["hit@10"] - mix),
        ]
        for n in names
    ]
    return [
        Block("h2", "Ablations"),
        Block("p", f"Item Hit@10 of each source alone and of the mix without it (mix: {mix:.3f})."),
        Block("table", header=["system", "hit@10", "vs mix"], rows=rows),
    ]


def _ranker_blocks(result: BacktestResult) -> list[Block]:
    blocks: list[Block] = []
    if result.importance:
        total = sum(g for _, g in result.importance) or 1.0
        blocks += [
            Block("h2", "Ranker"),
            Block("p", "Feature importance, share of the total gain (top 10)."),
            Block(
                "table",
                header=["feature", "share of gain"],
                rows=[[n, f"{g / total:.1%}"] for n, g in result.importance[:10]],
            ),
        ]
    if result.rerank_curve:
        blocks += [
            Block("h3", "Personalized re-ranking against the re-rank list size N"),
            Block(
                "table",
                header=["N", "hit@1", "hit@3", "hit@10"],
                rows=[
                    [n, _f(v["hit@1"], 4), _f(v["hit@3"], 4), _f(v["hit@10"], 4)]
                    for n, v in result.rerank_curve.items()
                ],
            ),
        ]
    return blocks


def _sample_blocks(result: BacktestResult) -> list[Block]:
    if not result.samples:
        return []
    blocks = [
        Block("h2", "Sample lists"),
        Block(
            "p",
            "The mix's top 10 for the most frequent seeds of the largest categories, with "
            "the sources that proposed each item (source #rank); ✓ = bought in a test basket "
            "with the seed.",
            html_only=True,
        ),
        Block("p", "Sample lists with titles and reasons: see report.html.", md_only=True),
    ]
    for s in result.samples:
        blocks.append(
            Block(
                "h3",
                f"{s['seed_title'] or s['seed_id']} ({s['seed_id']}; {s['category']}; "
                f"{s['queries']} queries)",
                html_only=True,
            )
        )
        blocks.append(
            Block(
                "table",
                header=["#", "item", "title", "why", "in a test basket"],
                rows=[
                    [
                        str(i),
                        r["item_id"],
                        r["title"],
                        ", ".join(r["reasons"]),
                        "✓" if r["hit"] else "",
                    ]
                    for i, r in enumerate(s["recommendations"], 1)
                ],
                html_only=True,
            )
        )
    return blocks


def report_blocks(
    result: BacktestResult,
    *,
    configs: Sequence[NamedConfig] = (),
    comparison: dict[str, Any] | None = None,
    plots: Sequence[tuple[str, str]] = (),
) -> list[Block]:
    """Every block of the report, in order (``plots``: file name and caption)."""
    configs = list(configs)
    title = f"Backtest: {result.dataset}"
    if comparison:
        title += " — " + " vs ".join(c["name"] for c in comparison["configs"])
    overridden = sorted({k for c in configs for k in c.config.categories})
    blocks = [Block("h1", title)]
    blocks += _summary_blocks(result)
    blocks += _setup_blocks(result, configs, result.queries)
    blocks += _tuning_blocks(result)
    if comparison:
        blocks += _compare_blocks(comparison)
    blocks += _results_blocks(result)
    blocks += _category_blocks(result, overridden)
    blocks += _cart_blocks(result)
    blocks += _ablation_blocks(result)
    blocks += _ranker_blocks(result)
    if plots:
        blocks.append(Block("h2", "Plots"))
        blocks += [Block("img", name, items=[caption]) for name, caption in plots]
    blocks += _sample_blocks(result)
    texts = [c for c in configs if c.text is not None]
    if texts:
        blocks.append(Block("h2", "Appendix: configs"))
        for c in texts:
            blocks += [
                Block("h3", f"{c.name}: {c.path} (sha256 {c.sha256})"),
                Block("pre", c.text or ""),
            ]
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    blocks.append(Block("p", f"Seconds: {timings}."))
    return blocks


# -- rendering -------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    right = [i > 0 and all(_numeric(r[i]) for r in rows if i < len(r)) for i in range(len(header))]
    lines = ["| " + " | ".join(esc(h) or " " for h in header) + " |"]
    lines.append("|" + "".join("---:|" if r else "---|" for r in right))
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    c = str(cell).replace(",", "").replace("%", "").replace("*", "").strip("+−- ")
    try:
        float(c)
    except ValueError:
        return c in ("", "–")
    return True


def render_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for b in blocks:
        if b.html_only:
            continue
        if b.kind in ("h1", "h2", "h3"):
            parts.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "list":
            parts.append("\n".join(f"- {i}" for i in b.items))
        elif b.kind == "table":
            parts.append(_md_table(b.header, b.rows))
        elif b.kind == "img":
            parts.append(f"![{b.items[0] if b.items else b.text}]({b.text})")
        elif b.kind == "pre":
            parts.append("```toml\n" + b.text.rstrip("\n") + "\n```")
    return "\n\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em}th{background:#f2f2f2}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}
img{max-width:100%;display:block;margin:0.5em 0}
figcaption{color:#555;font-size:0.9em;margin-bottom:1.2em}
h2{border-bottom:1px solid #ddd;padding-bottom:0.2em;margin-top:1.6em}
"""


def render_html(blocks: Sequence[Block], images: dict[str, bytes]) -> str:
    """The report as one HTML page; every image is embedded as a ``data:`` URI."""
    e = html.escape
    out = []
    for b in blocks:
        if b.md_only:
            continue
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="n">{e(str(c))}</td>' if _numeric(c) else f"<td>{e(str(c))}</td>"
                    for c in r
                )
                + "</tr>"
                for r in b.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "img" and b.text in images:
            data = base64.b64encode(images[b.text]).decode("ascii")
            caption = b.items[0] if b.items else b.text
            out.append(
                f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        elif b.kind == "pre":
            out.append(f"<pre>{e(b.text)}</pre>")
    title = next((b.text for b in blocks if b.kind == "h1"), "Backtest")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )


def write_report(
    result: BacktestResult,
    out_dir: str | os.PathLike[str],
    *,
    configs: Sequence[NamedConfig] = (),
    comparison: dict[str, Any] | None = None,
    others: dict[str, BacktestResult] | None = None,
) -> Path:
    """Write ``metrics.json``, ``report.md``, ``report.html`` and the plots (PNG) into
    ``out_dir``, each atomically.

    With several configs, ``result`` is the reference config's run, ``others`` the other
    configs' runs (on the same queries) and ``comparison`` their differences
    (:func:`recset.eval._compare.compare_results`).
    """
    from recset.storage import atomic_write_bytes, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = result.to_json()
    if configs:
        metrics["configs"] = [c.record() for c in configs]
    if comparison:
        metrics["comparison"] = comparison
    if others:
        metrics["by_config"] = {name: r.to_json() for name, r in others.items()}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    images = render_plots(result, comparison)
    for name, (png, _) in images.items():
        atomic_write_bytes(out / name, png)
    blocks = report_blocks(
        result,
        configs=configs,
        comparison=comparison,
        plots=[(n, caption) for n, (_, caption) in images.items()],
    )
    atomic_write_text(out / "report.md", render_markdown(blocks))
    atomic_write_text(
        out / "report.html", render_html(blocks, {n: png for n, (png, _) in images.items()})
    )
    return out
