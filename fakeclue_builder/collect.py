"""Collect: list every configured source, sample, read + hash + probe + store each image, deduplicate.

Three steps, all through the runner so that each is sharded, atomic and resumable:
1. plan   — sources list candidate rows (no file is read); seeded sampling under the quotas, with an
            oversampling margin so that bad files and duplicates can be refilled;
2. probe  — `collect/_probe/`: each plan row is read, hashed, fully decoded and put in the blob store,
            in a pool of worker processes (one file per task: both cores busy);
3. select — `collect/`: exact and near duplicates across all sources, then quotas and the fake:real
            ratio, decided globally and deterministically; everything not selected is dropped with a reason.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

from fakeclue_builder.config import CollectConfig, stage_config_hash
from fakeclue_builder.dedup import Decision, Deduplicator
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.probe import ProbePool
from fakeclue_builder.sources.base import Source, build_source
from fakeclue_builder.store import (InputShard, StageDir, StageRunner, StageSummary, read_table, shard_rows,
                                    sweep_stale_temp)

log = logging.getLogger(__name__)

STAGE = "collect"
PROBE = "collect/_probe"


# ---------------------------------------------------------------------------------------------- plan


def _bounded(rows: Iterable[Row], limit: int | None) -> list[Row]:
    """The `limit` rows with the smallest sample keys (all rows when no limit), in O(limit) memory."""
    if limit is None:
        return list(rows)
    return heapq.nsmallest(limit, rows, key=lambda r: (r.sample_key, r.source_path))  # stable: listing order


def _sample_source(source: Source) -> list[Row]:
    spec = source.spec
    per_group = math.ceil(spec.quota_per_group * spec.oversample) if spec.quota_per_group else None
    total = math.ceil(spec.quota * spec.oversample) if spec.quota else None
    if per_group is None:
        return _bounded(source.list_rows(), total)
    groups: dict[str, list] = defaultdict(list)  # bounded max-heaps keyed on the negated sample key
    bad: list[Row] = []
    for n, row in enumerate(source.list_rows()):
        if not row.kept:  # already known bad (e.g. undecodable name): never sampled away, always reported
            bad.append(row)
            continue
        heap = groups[row.quota_group]
        item = (_neg(row.sample_key), row.source_path, -n, row)  # ties: listing order, deterministic
        if len(heap) < per_group:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    chosen = [item[-1] for heap in groups.values() for item in heap]
    return _bounded(chosen, total) + bad


def _neg(key: str) -> str:
    return "".join("0123456789abcdef"[15 - int(c, 16)] for c in key)


def plan(cfg: CollectConfig) -> list[Row]:
    """All plan rows of all sources, in processing order (source, path, frame)."""
    out: list[Row] = []
    for spec in cfg.sources:
        source = build_source(spec, cfg.seed)
        rows = _sample_source(source)
        rows.sort(key=lambda r: r.source_path)  # stable: a source's own order (e.g. frame slots) is kept
        log.info("source %s: %d candidate(s) planned", source.name, len(rows))
        out.extend(rows)
    return out


# ---------------------------------------------------------------------------------------------- probe

# ---------------------------------------------------------------------------------------------- select

_SELECT_COLUMNS = ["source", "source_path", "frame_index", "image_id", "phash", "label", "group_id", "quota_group",
                   "sample_key", "status"]


def _row_key(source: str, source_path: str, frame_index: int | None) -> tuple:
    return (source, source_path, frame_index if frame_index is not None else -1)


def _probe_table(probe: StageDir) -> list[dict]:
    rows: list[dict] = []
    for shard in probe.as_inputs(include_dropped=True):
        for path in (probe.shard_path(shard.index), probe.dropped_part(shard.index)):
            rows.extend(read_table(path, columns=_SELECT_COLUMNS).to_pylist())
    return rows


def _trim(rows: list[dict], limit: int | None, reason: str, detail: str, decisions: dict) -> list[dict]:
    if limit is None or len(rows) <= limit:
        return rows
    for r in rows[limit:]:
        decisions[_row_key(r["source"], r["source_path"], r["frame_index"])] = Decision(reason, detail)
    return rows[:limit]


def _apply_quotas(spec, rows: list[dict], decisions: dict) -> None:
    name = spec.name or spec.kind
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["quota_group"]].append(r)
    kept = []
    for group, members in sorted(groups.items()):
        kept += _trim(members, spec.quota_per_group, "over_quota", f"{name}: quota_per_group={spec.quota_per_group} "
                      f"reached in group {group}", decisions)
    kept.sort(key=_order)
    if spec.fake_real_ratio:
        fakes = [r for r in kept if r["label"] == FAKE]
        reals = [r for r in kept if r["label"] == REAL]
        ratio = spec.fake_real_ratio
        detail = f"{name}: fake_real_ratio={ratio}"
        if not fakes or not reals:
            log.warning("source %s has %d fake and %d real image(s): fake_real_ratio=%s drops all of them; "
                        "remove fake_real_ratio for one-sided sources", name, len(fakes), len(reals), ratio)
        if len(fakes) > ratio * len(reals):
            fakes = _trim(fakes, math.floor(ratio * len(reals)), "ratio_balance", detail, decisions)
        else:
            reals = _trim(reals, math.floor(len(fakes) / ratio), "ratio_balance", detail, decisions)
        kept = sorted(fakes + reals, key=_order)
    if spec.quota and len(kept) > spec.quota:
        if spec.fake_real_ratio:  # keep the ratio while cutting to the total
            n_fake = round(spec.quota * spec.fake_real_ratio / (1 + spec.fake_real_ratio))
            _trim([r for r in kept if r["label"] == FAKE], n_fake, "over_quota", f"{name}: quota={spec.quota}", decisions)
            _trim([r for r in kept if r["label"] == REAL], spec.quota - n_fake, "over_quota", f"{name}: quota={spec.quota}",
                  decisions)
        else:
            _trim(kept, spec.quota, "over_quota", f"{name}: quota={spec.quota}", decisions)


def _order(r: dict) -> tuple:
    return (r["sample_key"] or "", r["source_path"], r["frame_index"] if r["frame_index"] is not None else -1)


def decide(cfg: CollectConfig, probe_rows: list[dict]) -> dict[tuple, Decision]:
    """Global, deterministic drop decisions: duplicates first (in source then sample-key order), then quotas."""
    order = {(s.name or s.kind): i for i, s in enumerate(cfg.sources)}
    ok = sorted((r for r in probe_rows if r["status"] == "ok"), key=lambda r: (order[r["source"]], *_order(r)))
    d = cfg.dedup
    dedup = Deduplicator(d.exact, d.near, d.phash_threshold, d.across_labels)
    decisions: dict[tuple, Decision] = {}
    survivors: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        decision = dedup.check(r["image_id"], r["phash"], r["label"], r["group_id"], f"{r['source']}:{r['source_path']}")
        if decision:
            decisions[_row_key(r["source"], r["source_path"], r["frame_index"])] = decision
        else:
            survivors[r["source"]].append(r)
    for spec in cfg.sources:
        _apply_quotas(spec, survivors.get(spec.name or spec.kind, []), decisions)
    return decisions


def _decisions_hash(decisions: dict[tuple, Decision]) -> str:
    digest = hashlib.sha256()
    for key in sorted(decisions):
        digest.update(repr((key, decisions[key])).encode())
    return digest.hexdigest()


def _selector(decisions: dict[tuple, Decision]) -> Callable[[Iterable[Row]], Iterator[Row]]:
    def select(rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            decision = decisions.get(_row_key(row.source, row.source_path, row.frame_index))
            if row.kept and decision:
                row.drop(decision.reason, decision.detail, decision.duplicate_of)
            yield row

    return select


# ---------------------------------------------------------------------------------------------- entry


def run(cfg: CollectConfig, run_dir: Path, *, rank: int = 0, world_size: int = 1, force: bool = False,
        progress=None, before_write: Callable[[], None] | None = None) -> StageSummary:
    """The collect stage: plan, probe (sharded by rank), then select once every probe shard is done.

    Config problems (missing roots, unknown generators, ...) raise `ConfigError` while planning, before
    anything is written; `before_write` runs after planning succeeded (the CLI writes the resolved config).
    """
    config_hash = stage_config_hash(cfg)
    plan_shards: list[InputShard] = shard_rows(plan(cfg), cfg.shard_size)
    if before_write:
        before_write()
    pool = ProbePool(cfg, run_dir)
    try:
        probe_runner = StageRunner(run_dir, PROBE, config_hash, rank=rank, world_size=world_size, force=force,
                                   progress=progress)
        probe_summary = probe_runner.run(plan_shards, pool)
    finally:
        pool.close()
    if not probe_summary.complete:
        return StageSummary(STAGE, shards_total=len(plan_shards))
    if probe_summary.shards_run:
        sweep_stale_temp(run_dir / "blobs")
    probe = StageDir(run_dir, PROBE)
    decisions = decide(cfg, _probe_table(probe))
    salt = _decisions_hash(decisions)
    inputs = [InputShard(s.index, hashlib.sha256((s.fingerprint + salt).encode()).hexdigest(), s.n_rows, s.read)
              for s in probe.as_inputs(include_dropped=True)]
    runner = StageRunner(run_dir, STAGE, config_hash, force=force, progress=progress)
    summary = runner.run(inputs, _selector(decisions))
    summary.seconds += probe_summary.seconds
    return summary
