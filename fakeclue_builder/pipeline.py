"""The stage order, and running a row stage over the previous stage's finished output."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from fakeclue_builder.config import ConfigError, stage_config_hash

STAGE_ORDER = ("collect", "synthesize", "categorize", "prompts", "annotate", "aggregate", "export")
# what each row stage reads; optional inputs (synthesize) are read when that stage has run
INPUT_OF = {"categorize": ("collect", "synthesize"), "prompts": ("categorize",), "annotate": ("prompts",),
            "aggregate": ("annotate",)}
OPTIONAL = {"synthesize"}


def run_row_stage(stage: str, section: BaseModel, fn: Callable, run_dir: Path, *, rank: int = 0, world_size: int = 1,
                  force: bool = False, progress=None, config_salt: str = "", before_write=None, output: str | None = None,
                  executor=None):
    """Feed the finished shards of the stage before `stage` through `fn`, one shard at a time, into the stage's
    directory (or `output`, a sub-step such as `annotate/_qwen2_vl`)."""
    from fakeclue_builder.store import InputShard, StageDir, StageRunner

    inputs: list[InputShard] = []
    for name in INPUT_OF[stage]:
        previous = StageDir(run_dir, name)
        if name in OPTIONAL and not previous.path.exists():
            continue
        if not previous.is_complete():
            raise ConfigError(f"{stage} reads the output of {name}, which has not finished in {run_dir}; "
                              f"run 'fakeclue-builder {name} --run-dir {run_dir}' first")
        for shard in previous.as_inputs():  # shards of several stages, numbered one after the other
            inputs.append(InputShard(len(inputs), f"{name}:{shard.fingerprint}", shard.n_rows, shard.read))
    if before_write:
        before_write()
    runner = StageRunner(run_dir, output or stage, stage_config_hash(section) + config_salt, rank=rank,
                         world_size=world_size, force=force, progress=progress)
    return runner.run(inputs, fn, executor=executor)
