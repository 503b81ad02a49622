"""What the CLI prints after a stage: the summary line and the stage-specific tables (rich, stdout)."""

from __future__ import annotations

from pathlib import Path


def print_summary(summary, run_dir: Path) -> None:
    from rich.console import Console

    console = Console()
    if not summary.complete:
        console.print(f"{summary.stage}: this rank's shards are done; the stage completes when every rank has run.")
        return
    reasons = ", ".join(f"{k}={v}" for k, v in summary.dropped_by_reason.most_common()) or "none"
    console.print(f"[bold]{summary.stage}[/]: in={summary.rows_in} kept={summary.kept} dropped={summary.dropped} "
                  f"({reasons}); shards run={summary.shards_run} skipped={summary.shards_skipped}")
    console.print(f"output: {run_dir / summary.stage}  dropped rows: {run_dir / summary.stage / 'dropped.parquet'}")


def print_quality(stats_path: Path) -> None:
    import json

    from rich.console import Console

    extra = json.loads(stats_path.read_text()).get("extra", {})
    quality = extra.get("quality", {})
    overall = quality.get("all", {})
    console = Console()
    console.print(f"merge: {extra.get('merge', {})}")
    if overall:
        alarm = overall.get("templated_alarm", {})
        console.print(f"captions: {overall.get('n')}, median length {overall.get('length_words', {}).get('median')} "
                      f"words, distinct-2 {overall.get('distinct_2')}, templated-caption alarm: {alarm.get('alarm')} "
                      f"({alarm.get('n_templated', 0)} 8-grams shared by >= {alarm.get('threshold')} captions)")


def print_annotator_stats(stats_path: Path) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    extra = json.loads(stats_path.read_text()).get("extra", {})
    table = Table(title="annotators")
    for col in ("annotator", "ok", "failed by reason", "cache hits", "backend requests", "images/s", "tokens/s"):
        table.add_column(col, justify="left" if col in ("annotator", "failed by reason") else "right")
    for name, c in extra.items():
        failures = ", ".join(f"{k}={v}" for k, v in sorted(c.get("failures_by_reason", {}).items())) or "-"
        table.add_row(name, str(c.get("answers_ok", 0)), failures, str(c.get("cache_hits", 0)),
                      str(c.get("backend_requests", 0)), str(c.get("images_per_s") or "-"),
                      str(c.get("tokens_per_s") or "-"))
    Console().print(table)


def print_balance(run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from fakeclue_builder.store import StageDir
    from fakeclue_builder.synthesize import balance

    rows = [*StageDir(run_dir, "collect").iter_rows(), *StageDir(run_dir, "synthesize").iter_rows()]
    table = Table(title="fake:real per category after synthesize (? = not categorized yet)")
    for col in ("cate", "fake", "real"):
        table.add_column(col, justify="left" if col == "cate" else "right")
    for cate, counts in balance(rows).items():
        table.add_row(cate, str(counts["fake"]), str(counts["real"]))
    Console().print(table)
