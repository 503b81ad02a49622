"""Chameleon (AIDE, ICLR 2025): `test/0_real/*`, `test/1_fake/*` — high-quality fakes, often artifact-free."""

from __future__ import annotations

from typing import Iterator

from fakeclue_builder.manifests import load_manifest
from fakeclue_builder.records import FAKE, Row
from fakeclue_builder.sources.base import Source, require_dir, walk_files


class ChameleonSource(Source):
    def list_rows(self) -> Iterator[Row]:
        label_map = load_manifest("chameleon").label_map
        test_dir = self.spec.root / "test" if (self.spec.root / "test").is_dir() else self.spec.root
        for folder, label in sorted(label_map.items()):
            require_dir(test_dir / folder, f"source {self.name!r} (chameleon) expects {folder}/ under root")
        for folder, label in sorted(label_map.items()):
            for path in walk_files(test_dir / folder):
                rel = str(path.relative_to(test_dir))
                yield self.plan_row(str(path), rel, label, quota_group=folder,
                                    generator="chameleon" if label == FAKE else None,
                                    no_forced_artifacts=label == FAKE)
