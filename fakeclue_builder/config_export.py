"""Configuration of the export stage and of `push` (re-exported by `fakeclue_builder.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fakeclue_builder.config_base import _Model


class ExportConfig(_Model):
    """Split, Parquet shards with the HF Image feature, dataset card, optional FakeClue json + image tree."""

    test_size: int | float = Field(
        5000, gt=0, description="Test rows: a count (the paper's 5000) or, below 1, a fraction of the rows.")
    seed: int = Field(0, description="Seed of the split (the same seed and rows give the same split).")
    phash_threshold: int = Field(
        4, ge=0, le=32, description="Images whose pHashes differ in at most this many bits are one group "
        "for the split (near duplicates never straddle train/test).")
    shard_size_mb: float = Field(500.0, gt=0, description="Target size of one Parquet shard (image bytes), in MB.")
    row_group_size: int = Field(
        100, ge=1, description="Rows per Parquet row group (100 is what the Hub's viewer expects for images).")
    verify: Literal["size", "sha256"] = Field(
        "size", description="Check each blob before copying it: its size (free), or its sha256 against "
        "image_id (reads every byte twice; catches silent corruption).")
    fakeclue_layout: bool = Field(
        False, description="Also write data_json/{train,test}.json in the released FakeClue format and the "
        "image trees {train,test}/<source>/{real,fake}/... they point to.")
    link_images: Literal["hardlink", "copy"] = Field(
        "hardlink", description="fakeclue_layout: hard-link the blobs into the image tree (falls back to a "
        "copy across file systems) or always copy them.")
    pretty_name: str = Field("FakeClue (rebuilt with fakeclue-builder)", description="Dataset card title.")
    license: str = Field(
        "other", description="The card's license id; 'other' (default) because the upstream licences differ "
        "— they are listed per source in the card.")
    repo_id: str | None = Field(None, description="Hub repo the card's links and loading example name (ORG/NAME).")
