"""What a run directory holds: per stage, shards done/total, rows in/kept/dropped by reason, time spent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# a stage appears in `status` once its directory exists (pipeline order)
from fakeclue_builder.pipeline import STAGE_ORDER


@dataclass
class StageStatus:
    stage: str
    shards_done: int
    shards_total: int
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.shards_total > 0 and self.shards_done == self.shards_total


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stage_status(run_dir: Path, stage: str) -> StageStatus | None:
    """Status of one stage (sub-steps like `collect/_probe` are included in their stage's time)."""
    stage_dir = run_dir / stage
    manifest = _read_json(stage_dir / "_manifest.json")
    if manifest is None:
        probe = _read_json(stage_dir / "_probe" / "_manifest.json")
        if probe is None:
            return None
        return _from_markers(stage, stage_dir / "_probe", probe["n_shards"])
    status = _from_markers(stage, stage_dir, manifest["n_shards"])
    for sub in sorted(p for p in stage_dir.glob("_*") if (p / "_manifest.json").exists()):
        status.seconds += _from_markers(stage, sub, _read_json(sub / "_manifest.json")["n_shards"]).seconds
    stats = _read_json(stage_dir / "_stats.json") if status.complete else None
    if stats is not None:  # a finished stage's totals (export also counts rows it dropped before sharding)
        status.rows_in, status.kept, status.dropped = stats["in"], stats["kept"], stats["dropped"]
        status.dropped_by_reason = dict(sorted(stats["dropped_by_reason"].items(), key=lambda kv: -kv[1]))
    return status


def _from_markers(stage: str, directory: Path, n_shards: int) -> StageStatus:
    status = StageStatus(stage, 0, n_shards)
    reasons: dict[str, int] = {}
    for i in range(n_shards):
        marker = _read_json(directory / "_done" / f"part-{i:05d}")
        if marker is None:
            continue
        status.shards_done += 1
        status.rows_in += marker["in"]
        status.kept += marker["kept"]
        status.dropped += marker["dropped"]
        status.seconds += marker["seconds"]
        for reason, n in marker["dropped_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    status.dropped_by_reason = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    if directory.name.startswith("_"):  # a sub-step: report it as the stage still in progress
        status.stage = f"{stage} ({directory.name.lstrip('_')})"
    return status


def run_status(run_dir: Path) -> tuple[list[StageStatus], str | None]:
    """All stages present, and the next stage to run (None when everything known is complete)."""
    found = [s for s in (stage_status(run_dir, name) for name in STAGE_ORDER) if s is not None]
    done = {s.stage for s in found if s.complete}
    last = max((STAGE_ORDER.index(name) for name in done), default=-1)  # optional stages skipped are not "next"
    unfinished = [s.stage.split(" ")[0] for s in found if not s.complete]
    if unfinished:
        return found, unfinished[0]
    return found, next((name for name in STAGE_ORDER[last + 1:]), None)
