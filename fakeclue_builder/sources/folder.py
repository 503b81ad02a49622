"""Plain folders: every image under `root` gets the configured label (and optional cate / generator)."""

from __future__ import annotations

from typing import Iterator

from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.sources.base import Source, require_dir, walk_files


class FolderSource(Source):
    def list_rows(self) -> Iterator[Row]:
        root = self.spec.root
        require_dir(root, f"source {self.name!r} (folder) root")
        label = REAL if self.spec.label == "real" else FAKE
        generator = self.spec.generator if label == FAKE else None
        for path in walk_files(root):
            rel = str(path.relative_to(root))
            yield self.plan_row(str(path), rel, label, quota_group=self.spec.label, generator=generator,
                                cate=self.spec.cate)
