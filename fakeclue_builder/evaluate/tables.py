"""Markdown tables shaped like the FakeVLM paper's (Table 2: Acc / F1 / ROUGE-L / CSS per method; Table 4:
Acc / F1 per category), the FF++ per-method AUC table, the per-category bar chart, and `compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakeclue_builder.records import CATEGORIES

OVERALL_COLUMNS = [("Acc", "acc"), ("F1", "f1"), ("ROUGE-L", "rouge_l"), ("CSS", "css"), ("AUC", "auc"),
                   ("Acc real", "acc_real"), ("Acc fake", "acc_fake"), ("F1 real", "f1_real"), ("F1 macro", "f1_macro")]


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def overall_table(results: list[dict[str, Any]]) -> str:
    """Table 2 shape: one row per method."""
    header = ["Method", "Benchmark", "N"] + [name for name, _ in OVERALL_COLUMNS] + ["Unparsed", "Errors"]
    rows = [[r["name"], r["benchmark"], str(r["n"])] + [_fmt(r["metrics"].get(key)) for _, key in OVERALL_COLUMNS]
            + [str(r["unparsed"]), str(sum(r["errors"].values()))] for r in results]
    return _table(header, rows)


def _categories(results: list[dict[str, Any]]) -> list[str]:
    seen = {c for r in results for c in r["metrics"]["per_category"]}
    return [c for c in CATEGORIES if c in seen] + sorted(seen - set(CATEGORIES))


def category_table(results: list[dict[str, Any]]) -> str:
    """Table 4 shape: one row per method, Acc and F1 per category."""
    cates = _categories(results)
    header = ["Method"] + [f"{c} {m}" for c in cates for m in ("Acc", "F1")]
    rows = []
    for r in results:
        per = r["metrics"]["per_category"]
        rows.append([r["name"]] + [_fmt(per.get(c, {}).get(k)) for c in cates for k in ("acc", "f1")])
    return _table(header, rows)


def method_auc_table(results: list[dict[str, Any]]) -> str | None:
    """FF++ per-method AUC (each method's fakes against all real rows), when any run has methods."""
    methods = sorted({m for r in results for m in r["metrics"].get("per_method_auc", {})})
    if not methods:
        return None
    rows = [[r["name"]] + [_fmt(r["metrics"]["per_method_auc"].get(m, {}).get("auc")) for m in methods]
            + [_fmt(r["metrics"].get("auc"))] for r in results]
    return _table(["Method"] + methods + ["All"], rows)


def results_markdown(results: list[dict[str, Any]]) -> str:
    benchmarks = ", ".join(sorted({r["benchmark"] for r in results}))
    parts = [f"# Evaluation: {benchmarks}", "", "## Overall (paper Table 2 shape)", "", overall_table(results), "",
             "F1 takes fake as the positive class; F1 real takes real; F1 macro is their mean. "
             + results[0]["unparsed_policy"].capitalize() + ". AUC: " + results[0]["auc_method"] + ".", "",
             "## Per category (paper Table 4 shape)", "", category_table(results), ""]
    methods = method_auc_table(results)
    if methods:
        parts += ["## AUC per method (FF++ manipulation method / generator: its fakes against all real images)", "",
                  methods, ""]
    return "\n".join(parts)


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: accuracy per category, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cates = _categories(results)
    x = np.arange(len(cates))
    width = 0.8 / max(1, len(results))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(cates) + 2), 3.6))
    for i, r in enumerate(results):
        per = r["metrics"]["per_category"]
        values = [per.get(c, {}).get("acc") or 0.0 for c in cates]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, values, width, label=f"{r['name']} ({r['benchmark']})")
    ax.set_xticks(x, cates, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per category (unparsed counted as wrong)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def compare(runs: list[Path], output: Path | None = None) -> str:
    """Several runs' results side by side (Markdown); with `output`, also writes compare.md and the chart."""
    from fakeclue_builder.evaluate.report import read_results

    results = [read_results(run) for run in runs]
    text = results_markdown(results)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        (output / "compare.md").write_text(text)
        bar_chart(results, output / "per_category.png")
    return text
