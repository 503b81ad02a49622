"""Shared fixtures: the offline demo sources (built once per session) and a collect runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fakeclue_builder.config import CollectConfig
from fakeclue_builder.demo import make_demo_sources


@pytest.fixture(scope="session")
def demo_sources(tmp_path_factory) -> dict[str, Path]:
    """GenImage-, Chameleon-, FF++-, folder- and FakeClue-style trees in their exact upstream layouts."""
    return make_demo_sources(tmp_path_factory.mktemp("demo") / "sources", seed=0)


@pytest.fixture
def demo_copy(demo_sources, tmp_path) -> dict[str, Path]:
    """A private copy of the demo sources that a test may damage."""
    root = demo_sources["genimage"].parent.parent
    dst = tmp_path / "sources"
    shutil.copytree(root, dst, symlinks=True)
    return {k: dst / v.relative_to(root) for k, v in demo_sources.items()}


def collect_config(sources: list[dict], **kwargs) -> CollectConfig:
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("shard_size", 8)
    return CollectConfig.model_validate({"sources": sources, **kwargs})
