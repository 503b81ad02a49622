"""Executors for the row stages: where a stage's shards run. Local (the default) runs them in this process;
`RayExecutor` hands them to Ray Data actors, each owning one copy of the stage function and its models.

Ray is imported only when the Ray executor runs (`pip install -e '.[ray]'`). Shards still go through
`StageRunner` (in the actors): every output shard, done-marker, dropped part and cache entry is written exactly as
locally, so `status`, resume and the next stage see no difference. An actor whose stage function raises on a
shard drops that shard's rows with reason `batch_failed` instead of ending the job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from fakeclue_builder.config_executor import RayConfig

log = logging.getLogger(__name__)


class _ShardWorker:
    """A Ray Data actor: builds a runner like the driver's, keeps one stage function, runs shards by index."""

    def __init__(self, run_dir: str, stage_dir: str, config_hash: str, shards: dict, fn: Callable) -> None:
        from fakeclue_builder.store import StageRunner

        self.runner = StageRunner(Path(run_dir), stage_dir, config_hash)
        self.shards, self.fn = shards, fn

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [self.runner.run_shard_or_drop(self.shards[int(i)], self.fn) for i in batch["index"]]
        return {"index": list(batch["index"]), "rows": rows}


class RayExecutor:
    """Runs a stage's shards on Ray Data actors (see the module docstring)."""

    def __init__(self, cfg: RayConfig, stage: str):
        self.cfg, self.stage = cfg, stage

    def _init(self) -> None:
        try:
            import ray
        except ImportError:
            from fakeclue_builder.config import ConfigError

            raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]' (or use --executor local)") from None
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.cfg.init_kwargs}
            ray.init(address=self.cfg.address, **kwargs)

    def run_shards(self, runner, shards: list, fn: Callable, advance: Callable | None) -> int:
        """Run `shards` (this rank's shards that are not current) on actors; returns how many ran."""
        if not shards:
            return 0
        self._init()
        import ray

        actors = self.cfg.actors(self.stage)
        concurrency = min(actors.concurrency, len(shards))
        log.info("%s: %d shard(s) on %d Ray actor(s) (%s GPU, %s CPU each)", runner.dir.name, len(shards),
                 concurrency, actors.num_gpus, actors.num_cpus)
        dataset = ray.data.from_items([{"index": s.index} for s in shards])
        results = dataset.map_batches(
            _ShardWorker, batch_size=self.cfg.shards_per_batch, concurrency=concurrency,
            num_gpus=actors.num_gpus or None, num_cpus=actors.num_cpus,
            fn_constructor_kwargs={"run_dir": str(runner.run_dir), "stage_dir": runner.stage,
                                   "config_hash": runner.config_hash, "shards": {s.index: s for s in shards},
                                   "fn": fn})
        done = 0
        for record in results.iter_rows():
            done += 1
            if advance:
                advance(int(record["rows"]))
        return done


def make_executor(kind: str, cfg: RayConfig | None, stage: str):
    """None (run locally) or the executor named by `--executor`."""
    if str(getattr(kind, "value", kind)) == "local":
        return None
    return RayExecutor(cfg or RayConfig(), stage)
