"""Export stage: aggregate's rows -> a folder that *is* a Hub dataset repo.

`DIR/export/` gets `data/{train,test}-NNNNN-of-NNNNN.parquet` (HF features embedded: `image` = the original
bytes, never decoded or re-encoded; `label` = ClassLabel [fake, real]), `README.md` (the dataset card), and, with
`fakeclue_layout`, `data_json/{train,test}.json` in the released FakeClue format plus the image trees they point to.

Two passes over aggregate's shards, memory flat in the number of images:
1. plan: read the small columns only, drop rows that cannot be exported (with reasons), split (split.py, leak
   check must be 0), and assign every kept row to an output shard by its byte size;
2. write: stream full rows shard by shard, copy each blob's bytes into its output shard's row groups; a shard is
   written to a temp name, fsynced, renamed, then marked done (`_done/part-NNNNN`), so a rerun skips it.
Stage bookkeeping (`_manifest.json`, `_done/`, `_stats.json`, `dropped.parquet`) lives beside the data; `push`
does not upload it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fakeclue_builder.config import ConfigError, ExportConfig, stage_config_hash
from fakeclue_builder.consensus import VERDICT
from fakeclue_builder.records import CATEGORIES, Row
from fakeclue_builder.split import TEST, TRAIN, leakage, split_rows

log = logging.getLogger(__name__)

STAGE = "export"
INPUT = "aggregate"
PLAN_COLUMNS = ["image_id", "source", "source_path", "label", "cate", "group_id", "phash", "blob", "n_bytes",
                "caption", "generator", "format", "width", "height"]
WRITE_COLUMNS = PLAN_COLUMNS + ["annotations", "prompt_id", "prompt_sha256", "aggregate_mode"]
FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass
class OutputShard:
    split: str
    index: int  # within its split
    of: int  # shards in its split
    marker: int  # global index of its done-marker
    image_ids: list[str] = field(default_factory=list)
    n_bytes: int = 0

    @property
    def name(self) -> str:
        return f"data/{self.split}-{self.index:05d}-of-{self.of:05d}.parquet"

    def fingerprint(self, config_hash: str) -> str:
        digest = hashlib.sha256(f"{config_hash}:{self.name}".encode())
        for image_id in self.image_ids:
            digest.update(image_id.encode())
        return digest.hexdigest()


@dataclass
class ExportPlan:
    rows: list[Row]  # kept rows (small columns only), input order
    dropped: list[Row]
    split: dict[str, str]  # image_id -> train | test
    shards: list[OutputShard]
    shard_of: dict[str, OutputShard]  # image_id -> its output shard
    groups: int = 0
    leakage: dict[str, int] = field(default_factory=dict)
    rows_in: int = 0
    per_stratum: dict[str, dict[str, int]] = field(default_factory=dict)  # "cate/real|fake" -> {train, test}


def export_ext(row: Row) -> str:
    return FORMAT_EXT.get((row.format or "").upper(), Path(row.source_path or "").suffix.lower() or ".bin")


def image_name(row: Row) -> str:
    """The file name stored with the bytes (HF Image `path`): content-addressed, with the format's extension."""
    return f"{row.image_id}{export_ext(row)}"


# ---------------------------------------------------------------------------------------------- pass 1: plan


def _read_plan_rows(run_dir: Path) -> list[Row]:
    from fakeclue_builder.store import StageDir

    stage = StageDir(run_dir, INPUT)
    if not stage.is_complete():
        raise ConfigError(f"export reads the output of {INPUT}, which has not finished in {run_dir}; "
                          f"run 'fakeclue-builder {INPUT} --run-dir {run_dir}' first")
    return list(stage.iter_rows(columns=PLAN_COLUMNS))


def check_row(row: Row, run_dir: Path) -> tuple[str, str] | None:
    """(reason, detail) if the row cannot be exported, else None. Only cheap checks (a stat per blob)."""
    if row.cate not in CATEGORIES:
        return "cate_unknown", f"cate {row.cate!r} is not one of {', '.join(CATEGORIES)}"
    if not row.caption:
        return "caption_missing", "aggregate left no caption"
    if not row.caption.startswith(VERDICT[row.label]):
        return "caption_verdict_mismatch", f"label {row.label} but the caption starts {row.caption[:40]!r}"
    if not row.blob:
        return "blob_missing", "the row has no blob path"
    try:
        size = os.stat(os.path.join(run_dir, row.blob)).st_size  # (no Path objects: this runs once per row)
    except OSError as e:
        return "blob_missing", f"{row.blob}: {e.strerror}"
    if row.n_bytes is not None and size != row.n_bytes:
        return "blob_size_mismatch", f"{row.blob} has {size} bytes, the row says {row.n_bytes}"
    return None


def _resolve_test_size(cfg: ExportConfig, n_rows: int) -> int:
    if isinstance(cfg.test_size, float) and cfg.test_size < 1:
        return max(1, round(cfg.test_size * n_rows))
    size = int(cfg.test_size)
    if size >= n_rows:
        raise ConfigError(f"export.test_size is {size} but only {n_rows} rows can be exported; set "
                          f"export.test_size below {n_rows} (a count) or to a fraction such as 0.1")
    return size


def _assign_shards(rows: list[Row], split: dict[str, str], target_bytes: float) -> list[OutputShard]:
    shards: list[OutputShard] = []
    for side in (TRAIN, TEST):
        mine: list[OutputShard] = []
        for row in rows:
            if split[row.image_id] != side:
                continue
            if not mine or (mine[-1].image_ids and mine[-1].n_bytes + (row.n_bytes or 0) > target_bytes):
                mine.append(OutputShard(side, len(mine), 0, 0))
            mine[-1].image_ids.append(row.image_id)
            mine[-1].n_bytes += row.n_bytes or 0
        for shard in mine:
            shard.of, shard.marker = len(mine), len(shards)
            shards.append(shard)
    return shards


def plan_export(cfg: ExportConfig, run_dir: Path) -> ExportPlan:
    """Pass 1: checks, split, leak check, shard assignment (no image bytes read)."""
    rows_in = _read_plan_rows(run_dir)
    kept, dropped, seen = [], [], set()
    for row in rows_in:
        problem = check_row(row, run_dir)
        if problem is None and row.image_id in seen:
            problem = ("duplicate_exact", "the same image_id appears twice in aggregate's output")
        if problem:
            dropped.append(row.drop(*problem))
        else:
            seen.add(row.image_id)
            kept.append(row)
    if len(kept) < 2:
        raise ConfigError(f"only {len(kept)} of {len(rows_in)} rows can be exported (see the reasons in "
                          f"{run_dir / STAGE / 'dropped.parquet'} after a run); a split needs at least 2")
    result = split_rows(kept, _resolve_test_size(cfg, len(kept)), cfg.seed, cfg.phash_threshold)
    leaks = leakage(kept, result.split, cfg.phash_threshold)
    if leaks.groups_across or leaks.phash_pairs_across:
        raise RuntimeError(f"split leaks: {leaks}; this is a bug, please report it with the run's config")
    shards = _assign_shards(kept, result.split, cfg.shard_size_mb * 1e6)
    shard_of = {image_id: shard for shard in shards for image_id in shard.image_ids}
    return ExportPlan(kept, dropped, result.split, shards, shard_of, result.groups,
                      {"groups_across": leaks.groups_across, "phash_pairs_across": leaks.phash_pairs_across},
                      len(rows_in), result.per_stratum)


# ---------------------------------------------------------------------------------------------- pass 2: write


def _marker_path(out_dir: Path, shard: OutputShard) -> Path:
    return out_dir / "_done" / f"part-{shard.marker:05d}"


def _is_current(out_dir: Path, shard: OutputShard, fingerprint: str) -> bool:
    import json

    try:
        marker = json.loads(_marker_path(out_dir, shard).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("fingerprint") == fingerprint and (out_dir / shard.name).is_file()


def _iter_export_rows(run_dir: Path):
    """aggregate's rows with the columns the export writes (not prompts, scores, claims: less to convert)."""
    from fakeclue_builder.store import StageDir

    return StageDir(run_dir, INPUT).iter_rows(columns=WRITE_COLUMNS)


def write_shards(plan: ExportPlan, cfg: ExportConfig, run_dir: Path, config_hash: str, on_row=None,
                 layout=None) -> tuple[int, int]:
    """Pass 2: stream full rows, write every output shard that is not current. Returns (run, skipped)."""
    from concurrent.futures import ThreadPoolExecutor

    from fakeclue_builder.export_writer import READERS, Buffers, ShardWriter, export_record

    out_dir = run_dir / STAGE
    todo = {s.marker for s in plan.shards if not _is_current(out_dir, s, s.fingerprint(config_hash))}
    remaining = {s.marker: len(s.image_ids) for s in plan.shards}
    writers: dict[int, ShardWriter] = {}
    commits, buffers = [], Buffers()
    with ThreadPoolExecutor(READERS, thread_name_prefix="export-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="export-commit") as closer, \
            ThreadPoolExecutor(1, thread_name_prefix="export-writeback") as writeback:
        try:
            for row in _iter_export_rows(run_dir):
                shard = plan.shard_of.get(row.image_id)
                if shard is None:  # dropped in pass 1
                    continue
                if layout is not None:
                    layout.add(row, plan.split[row.image_id])
                if shard.marker in todo:
                    if shard.marker not in writers:
                        writers[shard.marker] = ShardWriter(out_dir / shard.name, _marker_path(out_dir, shard),
                                                            cfg.row_group_size, cfg.verify, reader, buffers,
                                                            closer, writeback)
                    writers[shard.marker].add(export_record(row, image_name(row)), os.path.join(run_dir, row.blob),
                                              row.n_bytes)
                remaining[shard.marker] -= 1
                if remaining[shard.marker] == 0 and shard.marker in writers:
                    commits.append(writers[shard.marker].close(
                        {"file": shard.name, "fingerprint": shard.fingerprint(config_hash)}))
                    del writers[shard.marker]  # only now: a close that raised is aborted below
                if on_row:
                    on_row(row)
        finally:
            for writer in writers.values():  # unfinished (an error): no marker, temp file removed
                writer.abort()
        for commit in commits:
            commit.result()  # re-raises a failed fsync/rename
    if any(remaining.values()) or writers:
        raise RuntimeError(f"{INPUT}'s output changed while exporting; rerun 'fakeclue-builder export'")
    return len(todo), len(plan.shards) - len(todo)


def _write_dropped(plan: ExportPlan, out_dir: Path) -> None:
    from fakeclue_builder.records import rows_to_table
    from fakeclue_builder.store import atomic_write_table

    atomic_write_table(out_dir / "dropped.parquet", rows_to_table(plan.dropped))


def _remove_stale(out_dir: Path, plan: ExportPlan) -> None:
    """Shards and markers of an earlier export with a different plan would be loaded as data: remove them."""
    names = {s.name for s in plan.shards}
    for path in (out_dir / "data").glob("*.parquet"):
        if f"data/{path.name}" not in names:
            path.unlink()
    for path in (out_dir / "_done").glob("part-*"):
        if int(path.name.split("-")[1]) >= len(plan.shards):
            path.unlink()


def stats_of(plan: ExportPlan, summary, config_hash: str, seconds: float) -> dict:
    per_split = Counter(plan.split[r.image_id] for r in plan.rows)
    return {
        "stage": STAGE, "shards": len(plan.shards), "in": plan.rows_in, "kept": len(plan.rows),
        "dropped": len(plan.dropped), "dropped_by_reason": dict(sorted(summary.dropped_by_reason.items())),
        "timings": {"seconds": round(seconds, 3)}, "config_hash": config_hash,
        "extra": {"splits": {TRAIN: per_split[TRAIN], TEST: per_split[TEST]}, "groups": plan.groups,
                  "leakage": plan.leakage, "per_stratum": plan.per_stratum,
                  "files": {s.name: len(s.image_ids) for s in plan.shards},
                  "image_bytes": sum(s.n_bytes for s in plan.shards)},
    }


def run(cfg: ExportConfig, run_dir: Path, *, force: bool = False, progress=None, before_write=None,
        build_config=None):
    """Export `run_dir`'s aggregated rows into `run_dir/export/` (see the module docstring)."""
    from fakeclue_builder.card import CardFacts, write_card
    from fakeclue_builder.export_fakeclue import FakeClueLayout
    from fakeclue_builder.store import StageSummary, atomic_write_json, sweep_stale_temp

    started = time.monotonic()
    run_dir = Path(run_dir)
    config_hash = stage_config_hash(cfg)
    plan = plan_export(cfg, run_dir)
    if before_write:
        before_write()
    out_dir = run_dir / STAGE
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale_temp(out_dir)
    if force:
        for marker in (out_dir / "_done").glob("part-*"):
            marker.unlink()
    (out_dir / "_stats.json").unlink(missing_ok=True)
    _remove_stale(out_dir, plan)
    atomic_write_json(out_dir / "_manifest.json", {"n_shards": len(plan.shards), "config_hash": config_hash})
    summary = StageSummary(STAGE, len(plan.shards), rows_in=plan.rows_in, kept=len(plan.rows),
                           dropped=len(plan.dropped), dropped_by_reason=Counter(r.reason for r in plan.dropped))
    layout = FakeClueLayout(out_dir, cfg.link_images, run_dir) if cfg.fakeclue_layout else None
    advance = progress("export", len(plan.rows)) if progress else None
    facts = CardFacts()

    def on_row(row: Row) -> None:
        facts.observe(row)
        if advance:
            advance(1)

    summary.shards_run, summary.shards_skipped = write_shards(plan, cfg, run_dir, config_hash, on_row, layout)
    if layout is not None:
        layout.close()
    _write_dropped(plan, out_dir)
    if summary.rows_in != summary.kept + summary.dropped:
        from fakeclue_builder.store import InvariantError

        raise InvariantError(f"export: in={summary.rows_in} != kept={summary.kept} + dropped={summary.dropped}")
    stats = stats_of(plan, summary, config_hash, time.monotonic() - started)
    write_card(out_dir, cfg, plan, stats, facts, build_config)
    atomic_write_json(out_dir / "_stats.json", stats)
    summary.seconds, summary.complete = stats["timings"]["seconds"], True
    log.info("export: %d train / %d test rows in %d shards (%d written, %d current)", stats["extra"]["splits"][TRAIN],
             stats["extra"]["splits"][TEST], len(plan.shards), summary.shards_run, summary.shards_skipped)
    return summary
