"""The export's optional FakeClue layout: `data_json/{train,test}.json` exactly in the released format, and
the image trees `{train,test}/<source>/{real,fake}/...` the json's `image` paths are relative to (the
released `train.zip` / `test.zip` unpacked). Image bytes are hard-linked (or copied) from the blob store."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from fakeclue_builder.prompts import QUESTION
from fakeclue_builder.records import REAL, Row, label_name
from fakeclue_builder.split import TEST, TRAIN

log = logging.getLogger(__name__)

CATE_FOLDERS = {"deepfake": "ff++", "satellite": "satellite", "doc": "doc"}  # the release's folder names


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", part).strip("._") or "unknown"


def image_path(row: Row) -> str:
    """`<source>/<real|fake>/[<generator>/]<sha256>.<ext>`, relative to the split's image root."""
    from fakeclue_builder.export import image_name

    folder = CATE_FOLDERS.get(row.cate) or _safe(row.source)
    parts = [folder, label_name(row.label)]
    if row.label != REAL and row.generator:
        parts.append(_safe(row.generator))
    return "/".join(parts + [image_name(row)])


def fakeclue_record(row: Row, path: str) -> dict:
    return {"image": path, "label": int(row.label), "cate": row.cate, "width": row.width, "height": row.height,
            "conversations": [{"from": "human", "value": f"<image>{QUESTION}"},
                              {"from": "gpt", "value": row.caption}]}


class FakeClueLayout:
    """Receives every exported row once (in any order) and writes the json lists and image trees."""

    def __init__(self, out_dir: Path, link: str, run_dir: Path):
        self.out_dir, self.link, self.run_dir = Path(out_dir), link, Path(run_dir)
        (self.out_dir / "data_json").mkdir(parents=True, exist_ok=True)
        self.tmp = {s: self.out_dir / "data_json" / f".{s}.json.{os.getpid()}.tmp" for s in (TRAIN, TEST)}
        self.files = {s: open(self.tmp[s], "w", encoding="utf-8") for s in (TRAIN, TEST)}
        self.count = {TRAIN: 0, TEST: 0}
        self.written: dict[str, set[str]] = {TRAIN: set(), TEST: set()}
        for f in self.files.values():
            f.write("[")

    def add(self, row: Row, split: str) -> None:
        path = image_path(row)
        dest = self.out_dir / split / path
        if not dest.exists():
            self._place(self.run_dir / row.blob, dest)
        self.written[split].add(path)
        f = self.files[split]
        f.write(("\n" if self.count[split] == 0 else ",\n") + json.dumps(fakeclue_record(row, path), ensure_ascii=False))
        self.count[split] += 1

    def _place(self, blob: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        if self.link == "hardlink":
            try:
                tmp.unlink(missing_ok=True)
                os.link(blob, tmp)
                os.replace(tmp, dest)
                return
            except OSError:  # another file system, or links not allowed: copy
                pass
        shutil.copyfile(blob, tmp)
        os.replace(tmp, dest)

    def close(self) -> None:
        for split, f in self.files.items():
            f.write("\n]\n")
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self.tmp[split], self.out_dir / "data_json" / f"{split}.json")
            self._remove_unlisted(split)
        log.info("FakeClue layout: data_json/train.json (%d), data_json/test.json (%d)",
                 self.count[TRAIN], self.count[TEST])

    def _remove_unlisted(self, split: str) -> None:
        """Images left by an earlier export with another split or row set are not part of this one."""
        root = self.out_dir / split
        if not root.is_dir():
            return
        for path in root.rglob("*"):
            if path.is_file() and path.relative_to(root).as_posix() not in self.written[split]:
                path.unlink()
