"""Collect's per-file work: read, hash, fully decode and store each planned image, in worker processes.

Kept apart from `collect` so that workers import only what probing needs (no pyarrow): both cores go to
decoding, and the process tree stays small.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Iterable, Iterator

from fakeclue_builder.config import CollectConfig
from fakeclue_builder.images import BlobStore
from fakeclue_builder.records import Row
from fakeclue_builder.sources.base import LoadContext, build_source

log = logging.getLogger(__name__)


class Loader:
    """Loads plan rows through their sources into one blob store (one per process)."""

    def __init__(self, cfg_json: dict, run_dir: str):
        cfg = CollectConfig.model_validate(cfg_json)
        self.sources = {(s.name or s.kind): build_source(s, cfg.seed) for s in cfg.sources}
        self.ctx = LoadContext(BlobStore(Path(run_dir), cfg.blob_mode), cfg.max_image_pixels,
                               frozenset(f.upper() for f in cfg.allowed_formats))

    def __call__(self, row: Row) -> list[Row]:
        try:
            return list(self.sources[row.source].load(row, self.ctx))
        except Exception as e:  # a bug or an unforeseen input must cost one row, not the run
            log.exception("unexpected error loading %s", row.source_path)
            return [row.drop("unexpected_error", f"{type(e).__name__}: {e}")]


_WORKER_LOADER: Loader | None = None


def _init_worker(cfg_json: dict, run_dir: str) -> None:
    global _WORKER_LOADER
    _WORKER_LOADER = Loader(cfg_json, run_dir)


def _load_in_worker(row: Row) -> list[Row]:
    return _WORKER_LOADER(row)


class ProbePool:
    """Loads rows in worker processes (started on first use: a no-op rerun starts none), or in-process."""

    def __init__(self, cfg: CollectConfig, run_dir: Path):
        self.cfg, self.run_dir, self.pool, self.loader = cfg, run_dir, None, None
        self.args = (cfg.model_dump(mode="json", by_alias=True), str(run_dir))

    def __call__(self, rows: Iterable[Row]) -> Iterator[Row]:
        if self.cfg.workers == 1:
            self.loader = self.loader or Loader(*self.args)
            for row in rows:
                yield from self.loader(row)
            return
        if self.pool is None:
            ctx = multiprocessing.get_context("spawn")  # never fork under the progress bar's thread
            self.pool = ctx.Pool(self.cfg.workers, _init_worker, self.args)
        for out in self.pool.imap(_load_in_worker, rows, chunksize=8):
            yield from out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None
