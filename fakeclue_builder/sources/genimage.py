"""GenImage (NeurIPS 2023): `<generator>/<subset>/{train,val}/{ai,nature}/*` — label from ai/nature."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from fakeclue_builder.config import ConfigError
from fakeclue_builder.manifests import load_manifest
from fakeclue_builder.records import FAKE, Row
from fakeclue_builder.sources.base import Source, require_dir, walk_files

SPLITS = ("train", "val")


class GenImageSource(Source):
    def _generator_dirs(self) -> list[Path]:
        root = self.spec.root
        require_dir(root, f"source {self.name!r} (genimage) root")
        found = sorted(p for p in root.iterdir() if p.is_dir())
        if self.spec.generators is None:
            return found
        by_name = {p.name: p for p in found}
        missing = [g for g in self.spec.generators if g not in by_name]
        if missing:
            raise ConfigError(
                f"source {self.name!r} (genimage): generator folder(s) {missing} not under {root}; "
                f"found {sorted(by_name)} — fix collect.sources[].generators"
            )
        return [by_name[g] for g in self.spec.generators]

    def list_rows(self) -> Iterator[Row]:
        label_map = load_manifest("genimage").label_map
        splits = self.spec.splits or SPLITS
        for gen_dir in self._generator_dirs():
            # <generator>/<subset>/<split>/<ai|nature>; tolerate the subset level being absent
            split_dirs = [d for s in splits for d in (*gen_dir.glob(f"*/{s}"), gen_dir / s) if d.is_dir()]
            for split_dir in sorted(split_dirs):
                for label_name, label in sorted(label_map.items()):
                    leaf = split_dir / label_name
                    if not leaf.is_dir():
                        continue
                    for path in walk_files(leaf):
                        rel = str(path.relative_to(self.spec.root))
                        yield self.plan_row(
                            str(path), rel, label, quota_group=f"{gen_dir.name}/{label_name}",
                            generator=gen_dir.name if label == FAKE else None,
                            meta={"genimage_generator": gen_dir.name, "split": split_dir.name},
                        )
