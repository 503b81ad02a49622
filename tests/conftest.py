"""Shared fixtures: the offline demo sources (built once per session), a tiny LLaVA, and a collect config."""

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


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    """A tiny random LLaVA-1.5 checkpoint with its processor (train, evaluate)."""
    from fakeclue_builder.tiny_models import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models"), ["llava"])["llava"]


def collect_config(sources: list[dict], **kwargs) -> CollectConfig:
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("shard_size", 8)
    return CollectConfig.model_validate({"sources": sources, **kwargs})
