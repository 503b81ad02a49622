"""The run directory and the runner: sharded Parquet, atomic commits, done-markers, stats, resume.

Stages never touch files. The runner feeds a stage function one input shard at a time, splits what
comes back into kept and dropped rows, writes both to temp names, fsyncs, renames, and only then writes
the shard's done-marker. A rerun skips shards whose marker records the same input fingerprint and config
hash. `in == kept + dropped` is checked for every shard before its marker is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from fakeclue_builder.records import SCHEMA, Row, rows_to_table, table_to_rows

log = logging.getLogger(__name__)

StageFn = Callable[[Iterable[Row]], Iterator[Row]]


class InvariantError(RuntimeError):
    """A stage lost or invented rows (a bug, never bad input)."""


@dataclass
class InputShard:
    """One unit of work: its index, a fingerprint of its content, and how to read its rows."""

    index: int
    fingerprint: str
    n_rows: int
    read: Callable[[], Iterable[Row]]


@dataclass
class StageSummary:
    stage: str
    shards_total: int
    shards_run: int = 0
    shards_skipped: int = 0
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    dropped_by_reason: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    complete: bool = False


# ---------------------------------------------------------------------------------------------- files


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_table(path: Path, table: pa.Table) -> str:
    """Write a Parquet file atomically; returns the sha256 of the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    digest = hashlib.sha256()
    with open(tmp, "rb+") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return digest.hexdigest()


PROCESS_STARTED = time.time()


def merge_counters(dicts: Iterable[dict]) -> dict:
    """Sum nested dicts of numbers (the stage-specific counters of every shard)."""
    out: dict = {}
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, dict):
                out[key] = merge_counters([out.get(key, {}), value])
            else:
                out[key] = round(out.get(key, 0) + value, 6)
    return out


def sweep_stale_temp(root: Path) -> int:
    """Remove `.*.tmp` files under `root` older than this process: debris of a killed run, never in-flight writes."""
    removed = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                path = Path(dirpath) / name
                try:
                    if path.stat().st_mtime < PROCESS_STARTED:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run under %s", removed, root)
    return removed


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (all or some columns). `pq.ParquetFile` rather than `pq.read_table`: the latter goes
    through pyarrow.dataset, whose first use imports pandas (~0.4 s per process)."""
    return pq.ParquetFile(path).read(columns=columns)


def read_rows(path: Path, columns: list[str] | None = None) -> list[Row]:
    """The rows of one shard (only `columns` filled when given; the rest keep their defaults)."""
    return table_to_rows(read_table(path, columns)) if path.exists() else []


# ---------------------------------------------------------------------------------------------- stage dir


class StageDir:
    """`runs/<name>/<stage>/`: shards, `_done/` markers, `_dropped/` parts, `_stats.json`, `dropped.parquet`."""

    def __init__(self, run_dir: Path, name: str):
        self.name = name
        self.path = Path(run_dir) / name

    def shard_path(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.parquet"

    def marker_path(self, index: int) -> Path:
        return self.path / "_done" / f"part-{index:05d}"

    def dropped_part(self, index: int) -> Path:
        return self.path / "_dropped" / f"part-{index:05d}.parquet"

    @property
    def stats_path(self) -> Path:
        return self.path / "_stats.json"

    @property
    def dropped_path(self) -> Path:
        return self.path / "dropped.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.path / "_manifest.json"

    def read_marker(self, index: int) -> dict | None:
        try:
            return json.loads(self.marker_path(index).read_text())
        except (OSError, ValueError):
            return None

    def read_manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None

    def read_stats(self) -> dict | None:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return None

    def is_complete(self) -> bool:
        manifest = self.read_manifest()
        if manifest is None:
            return False
        return all(self.read_marker(i) is not None for i in range(manifest["n_shards"]))

    def as_inputs(self, include_dropped: bool = False) -> list[InputShard]:
        """The finished output shards of this stage, as the next stage's inputs."""
        manifest = self.read_manifest()
        if manifest is None or not self.is_complete():
            raise FileNotFoundError(f"stage {self.name!r} in {self.path.parent} has not finished; run it first")
        shards = []
        for i in range(manifest["n_shards"]):
            marker = self.read_marker(i)
            fingerprint = marker["output_sha256"] + (marker["dropped_sha256"] if include_dropped else "")
            n_rows = marker["kept"] + (marker["dropped"] if include_dropped else 0)
            shards.append(InputShard(i, fingerprint, n_rows, self._reader(i, include_dropped)))
        return shards

    def _reader(self, index: int, include_dropped: bool) -> Callable[[], Iterable[Row]]:
        def read() -> Iterator[Row]:
            yield from read_rows(self.shard_path(index))
            if include_dropped:
                yield from read_rows(self.dropped_part(index))

        return read

    def iter_rows(self, columns: list[str] | None = None) -> Iterator[Row]:
        """All kept rows of a finished stage, shard by shard (only `columns` read when given)."""
        if columns is None:
            for shard in self.as_inputs():
                yield from shard.read()
            return
        for shard in self.as_inputs():
            yield from read_rows(self.shard_path(shard.index), columns)


# ---------------------------------------------------------------------------------------------- runner


def shard_rows(rows: list[Row], shard_size: int) -> list[InputShard]:
    """Split an in-memory row list (e.g. a plan) into input shards with content fingerprints."""
    shards = []
    for index, start in enumerate(range(0, len(rows), shard_size)):
        chunk = rows[start : start + shard_size]
        digest = hashlib.sha256()
        for row in chunk:
            digest.update(repr((row.source, row.source_path, row.frame_index, row.label, row.sample_key, row.status,
                                row.generator, row.cate, row.group_id, row.release_caption)).encode())
        shards.append(InputShard(index, digest.hexdigest(), len(chunk), (lambda c=chunk: iter(c))))
    return shards


class StageRunner:
    """Runs a stage function over input shards with resume, rank sharding, stats and progress."""

    def __init__(self, run_dir: Path, stage: str, config_hash: str, *, rank: int = 0, world_size: int = 1,
                 force: bool = False, progress: Callable | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"--rank {rank} --world-size {world_size}: rank must be in [0, world-size)")
        self.run_dir, self.stage = Path(run_dir), stage
        self.dir = StageDir(run_dir, stage)
        self.config_hash = config_hash
        self.rank, self.world_size, self.force = rank, world_size, force
        self.progress = progress

    def is_current(self, shard: InputShard) -> bool:
        marker = self.dir.read_marker(shard.index)
        return (
            marker is not None
            and marker.get("input_fingerprint") == shard.fingerprint
            and marker.get("config_hash") == self.config_hash
            and self.dir.shard_path(shard.index).exists()
        )

    def run(self, shards: list[InputShard], fn: StageFn, executor=None) -> StageSummary:
        """Run this rank's shards that are not current (in this process, or on `executor`, e.g. Ray)."""
        self.dir.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir.manifest_path, {"n_shards": len(shards), "n_rows": sum(s.n_rows for s in shards),
                                                   "config_hash": self.config_hash})
        summary = StageSummary(self.dir.name, shards_total=len(shards))
        mine = [s for s in shards if s.index % self.world_size == self.rank]
        todo = [s for s in mine if self.force or not self.is_current(s)]
        summary.shards_skipped = len(mine) - len(todo)
        if summary.shards_skipped:
            log.info("%s: %d shard(s) already done, skipped", self.dir.name, summary.shards_skipped)
        advance = self.progress(self.dir.name, sum(s.n_rows for s in todo)) if self.progress and todo else None
        if executor is not None:
            summary.shards_run = executor.run_shards(self, todo, fn, advance)
        else:
            for shard in todo:
                self._run_shard(shard, fn, advance)
                summary.shards_run += 1
        self._remove_stale(len(shards))
        self.finalize(summary, derive=getattr(fn, "derive_stats", None))
        return summary

    def run_shard_or_drop(self, shard: InputShard, fn: StageFn) -> int:
        """Run one shard; if the stage function raises, the shard's rows are dropped with reason `batch_failed`
        (and the error) instead of failing the job — what a distributed executor wants. Returns rows read."""
        try:
            self._run_shard(shard, fn, None)
        except Exception as exc:  # noqa: BLE001 - failures are data; the rows say what went wrong
            detail = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("%s shard %d failed (%s); its rows are dropped as batch_failed", self.dir.name, shard.index,
                        detail)
            self._run_shard(shard, lambda rows: (row.drop("batch_failed", detail) for row in rows), None)
        return shard.n_rows

    def _run_shard(self, shard: InputShard, fn: StageFn, advance: Callable | None) -> None:
        started = time.monotonic()
        self.dir.marker_path(shard.index).unlink(missing_ok=True)
        n_in = 0

        def counted() -> Iterator[Row]:
            nonlocal n_in
            for row in shard.read():
                n_in += 1
                yield row

        kept, dropped = [], []
        for row in fn(counted()):
            (kept if row.kept else dropped).append(row)
            if advance:
                advance(1)
        if n_in != len(kept) + len(dropped):
            raise InvariantError(
                f"stage {self.dir.name} shard {shard.index}: in={n_in} but kept={len(kept)} + dropped={len(dropped)}"
            )
        output_sha = atomic_write_table(self.dir.shard_path(shard.index), rows_to_table(kept))
        dropped_sha = atomic_write_table(self.dir.dropped_part(shard.index), rows_to_table(dropped))
        reasons = Counter(r.reason or "unknown" for r in dropped)
        extra = fn.shard_stats() if hasattr(fn, "shard_stats") else {}  # stage-specific counters, e.g. per model
        atomic_write_json(self.dir.marker_path(shard.index), {
            "extra": extra,
            "input_fingerprint": shard.fingerprint, "config_hash": self.config_hash,
            "in": n_in, "kept": len(kept), "dropped": len(dropped), "dropped_by_reason": dict(sorted(reasons.items())),
            "seconds": round(time.monotonic() - started, 3), "output_sha256": output_sha, "dropped_sha256": dropped_sha,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })

    def _remove_stale(self, n_shards: int) -> None:
        """Shards beyond the current count (a previous, larger run) would be read as output: remove them."""
        for pattern, dirpath in (("part-*.parquet", self.dir.path), ("part-*", self.dir.path / "_done"),
                                 ("part-*.parquet", self.dir.path / "_dropped")):
            for path in dirpath.glob(pattern):
                if int(path.name.split("-")[1].split(".")[0]) >= n_shards:
                    path.unlink()

    def finalize(self, summary: StageSummary, derive: Callable[[dict], dict] | None = None) -> None:
        """When every shard is done (by any rank): merge dropped parts, write `_stats.json` (the stage may
        `derive` figures such as rates from its merged counters)."""
        manifest = self.dir.read_manifest()
        markers = [self.dir.read_marker(i) for i in range(manifest["n_shards"])]
        if any(m is None for m in markers):
            log.info("%s: %d/%d shards done; the rest belong to other ranks", self.dir.name,
                     sum(m is not None for m in markers), len(markers))
            return
        for m in markers:
            summary.rows_in += m["in"]
            summary.kept += m["kept"]
            summary.dropped += m["dropped"]
            summary.dropped_by_reason.update(m["dropped_by_reason"])
            summary.seconds += m["seconds"]
        if summary.rows_in != summary.kept + summary.dropped:
            raise InvariantError(f"stage {self.dir.name}: in={summary.rows_in} != kept+dropped")
        self._merge_dropped(manifest["n_shards"])
        if summary.shards_run:
            sweep_stale_temp(self.dir.path)
        summary.complete = True
        atomic_write_json(self.dir.stats_path, {
            "stage": self.dir.name, "shards": manifest["n_shards"], "in": summary.rows_in, "kept": summary.kept,
            "dropped": summary.dropped, "dropped_by_reason": dict(sorted(summary.dropped_by_reason.items())),
            "timings": {"shard_seconds_total": round(summary.seconds, 3),
                        "shard_seconds_max": max((m["seconds"] for m in markers), default=0.0)},
            "config_hash": self.config_hash,
            "extra": (derive or (lambda x: x))(merge_counters(m.get("extra", {}) for m in markers)),
        })

    def _merge_dropped(self, n_shards: int) -> None:
        tmp = self.dir.dropped_path.with_name(f".dropped.{os.getpid()}.tmp")
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            for i in range(n_shards):
                part = self.dir.dropped_part(i)
                if part.exists():
                    writer.write_table(read_table(part).cast(SCHEMA))
        os.replace(tmp, self.dir.dropped_path)
