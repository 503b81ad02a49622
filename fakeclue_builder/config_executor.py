"""Configuration of the Ray executor (`--executor ray`; re-exported by `fakeclue_builder.config`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fakeclue_builder.config_base import _Model


class RayActors(_Model):
    """How many actors run a stage and what each one holds."""

    concurrency: int | None = Field(None, ge=1, description="Actors (each owns one copy of the stage's models); "
                                    "default: ray.concurrency.")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per actor (e.g. an annotator's tensor_parallel_size); "
                                   "default: ray.num_gpus.")
    num_cpus: float | None = Field(None, ge=0, description="CPUs per actor; default: ray.num_cpus.")


class RayConfig(_Model):
    """The Ray Data executor for the model stages (categorize, annotate, aggregate). Each actor owns one stage
    function (its models loaded once) and processes whole input shards through the run store, so markers, stats,
    dropped rows, the request cache and resume work as with the local executor. The run directory must be on a
    file system every node sees."""

    address: str | None = Field(None, description="Cluster to join: 'auto' (a running `ray start` cluster), "
                                "'ray://head:10001', or none for a local instance on this machine.")
    concurrency: int = Field(2, ge=1, description="Actors per stage (typically: the GPUs of the cluster / num_gpus).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (0 on CPU-only runs).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per actor.")
    shards_per_batch: int = Field(1, ge=1, description="Input shards an actor takes at a time.")
    stages: dict[str, RayActors] = Field(default_factory=dict, description="Per-stage overrides, e.g. "
                                         "{annotate: {num_gpus: 1, concurrency: 8}, aggregate: {num_gpus: 0}}.")
    init_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra ray.init arguments "
                                        "(e.g. num_cpus for a local instance, runtime_env).")

    def actors(self, stage: str) -> RayActors:
        """The resolved actor settings of one stage."""
        override = self.stages.get(stage, RayActors())
        return RayActors(concurrency=override.concurrency or self.concurrency,
                         num_gpus=self.num_gpus if override.num_gpus is None else override.num_gpus,
                         num_cpus=self.num_cpus if override.num_cpus is None else override.num_cpus)
