"""Import the released FakeClue (`data_json/{train,test}.json` + an image folder or `train.zip`/`test.zip`).

Label, cate and the released caption are kept. Zip members are read in place (never extracted); absolute
or `..` member paths are rejected, as are json entries whose image is missing.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from fakeclue_builder.config import ConfigError
from fakeclue_builder.records import FAKE, Row
from fakeclue_builder.sources.base import LoadContext, Source

ZIP_SEP = "::"
_FRAMES = re.compile(r"frames/(\d+)(?:_\d+)?/")


def unsafe_member(name: str) -> bool:
    """True for member paths that could escape the image root (absolute, drive letters, `..`)."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or bool(re.match(r"^[A-Za-z]:", norm)) or ".." in norm.split("/")


def release_caption(record: dict) -> str | None:
    for turn in record.get("conversations") or []:
        if turn.get("from") == "gpt":
            return turn.get("value")
    return None


@lru_cache(maxsize=4)
def _open_zip(path: str, pid: int) -> zipfile.ZipFile:  # pid in the key: never share a handle across fork
    return zipfile.ZipFile(path)


class FakeClueSource(Source):
    def _records(self) -> list[dict]:
        path = self.spec.json_path
        if not path.is_file():
            raise ConfigError(f"source {self.name!r} (fakeclue): json {path} does not exist; point `json:` at data_json/test.json")
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"source {self.name!r} (fakeclue): {path} is not valid JSON ({e})") from None
        if not isinstance(records, list):
            raise ConfigError(f"source {self.name!r} (fakeclue): {path} must hold a JSON list of records")
        return records

    def list_rows(self) -> Iterator[Row]:
        images_root = self.spec.images
        is_zip = images_root.is_file() and zipfile.is_zipfile(images_root)
        if not is_zip and not images_root.is_dir():
            raise ConfigError(f"source {self.name!r} (fakeclue): images {images_root} is neither a directory nor a zip")
        members = set(_open_zip(str(images_root), os.getpid()).namelist()) if is_zip else None
        for i, record in enumerate(self._records()):
            yield self._plan(record, i, images_root, members)

    def _plan(self, record: dict, i: int, images_root: Path, members: set[str] | None) -> Row:
        name = str(record.get("image", ""))
        label = int(record.get("label", FAKE))
        cate = record.get("cate")
        where = f"{images_root}{ZIP_SEP}{name}" if members is not None else str(images_root / name)
        video = _FRAMES.search(name) if cate == "deepfake" else None
        row = self.plan_row(where, name or f"record-{i}", label, quota_group=f"{cate}/{label}", cate=cate,
                            release_caption=release_caption(record),
                            group_id=f"ffpp:{video.group(1)}" if video else None,
                            meta={"fakeclue_image": name, "fakeclue_index": str(i)})
        if not name or unsafe_member(name):
            return row.drop("unsafe_zip_member", f"image path {name!r} is absolute, empty or contains '..'")
        if members is not None and posixpath.normpath(name) not in members and name not in members:
            return row.drop("missing_file", f"{name} is not a member of {images_root}")
        return row

    def load(self, row: Row, ctx: LoadContext) -> Iterator[Row]:
        if not row.kept:
            yield row
            return
        if ZIP_SEP not in row.source_path:
            if not os.path.lexists(row.source_path):
                yield row.drop("missing_file", f"{row.source_path} does not exist")
                return
            yield from super().load(row, ctx)
            return
        archive, member = row.source_path.split(ZIP_SEP, 1)
        try:
            data = _open_zip(archive, os.getpid()).read(member)
        except (KeyError, OSError, zipfile.BadZipFile) as e:
            yield row.drop("unreadable_file", f"{member} in {archive}: {e}")
            return
        if not data:
            yield row.drop("empty_file", f"{member} in {archive} has 0 bytes")
            return
        yield ctx.ingest(row, data)
