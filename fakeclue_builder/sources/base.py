"""What every upstream source shares: listing candidates, sampling keys, and turning bytes into a row.

A source lists *plan rows* (a `Row` with path, label, generator, ... but no bytes read yet) and later
*loads* each plan row into one or more finished rows. Loading never raises for bad input: the row comes
back dropped with a reason.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fakeclue_builder import images
from fakeclue_builder.records import Row

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".ico", ".heic"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})

# kind -> "module:Class", imported only when that kind is used
REGISTRY = {
    "folder": "fakeclue_builder.sources.folder:FolderSource",
    "genimage": "fakeclue_builder.sources.genimage:GenImageSource",
    "chameleon": "fakeclue_builder.sources.chameleon:ChameleonSource",
    "ffpp": "fakeclue_builder.sources.ffpp:FfppSource",
    "fakeclue": "fakeclue_builder.sources.fakeclue:FakeClueSource",
}


@dataclass
class LoadContext:
    """What loading needs besides the plan row: the blob store and the probe limits."""

    blobs: images.BlobStore
    max_pixels: int
    allowed_formats: frozenset[str]

    def ingest(self, row: Row, data: bytes, src: Path | None = None) -> Row:
        """Hash, probe (full decode check) and store `data` as the row's original bytes."""
        row.image_id = images.sha256_hex(data)
        row.n_bytes = len(data)
        try:
            probe = images.probe_image(data, max_pixels=self.max_pixels, allowed_formats=self.allowed_formats)
        except images.ImageRejected as e:
            return row.drop(e.reason, e.detail)
        row.format, row.width, row.height = probe.format, probe.width, probe.height
        row.mode, row.n_frames, row.exif_orientation, row.phash = (
            probe.mode,
            probe.n_frames,
            probe.exif_orientation,
            probe.phash,
        )
        ext = images.FORMAT_EXT.get(probe.format, probe.format.lower())
        row.blob = self.blobs.put(row.image_id, ext, data, src=src)
        return row


class Source:
    """Base class: subclasses implement `list_rows`; file-per-image sources inherit `load`."""

    def __init__(self, spec, seed: int):
        self.spec = spec
        self.name = spec.name or spec.kind
        self.seed = seed

    # -- listing ---------------------------------------------------------------------------------------
    def list_rows(self) -> Iterator[Row]:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan_row(self, path: str, rel: str, label: int, quota_group: str, **fields) -> Row:
        """A plan row with its seeded sampling key (independent of listing order)."""
        key = hashlib.sha256(f"{self.seed}\0{self.name}\0{rel}".encode("utf-8", "surrogateescape")).hexdigest()
        row = Row(source=self.name, source_path=safe_text(path), label=label, quota_group=quota_group, sample_key=key, **fields)
        if not is_utf8(path):
            row.drop("undecodable_filename", "file name is not valid UTF-8; rename it")
        return row

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, row: Row, ctx: LoadContext) -> Iterator[Row]:
        """Read the file at `row.source_path` and ingest it; bad input comes back dropped."""
        if not row.kept:
            yield row
            return
        path = Path(row.source_path)
        try:
            data = images.read_file(path)
        except images.ImageRejected as e:
            yield row.drop(e.reason, e.detail)
            return
        yield ctx.ingest(row, data, src=path)


def build_source(spec, seed: int) -> Source:
    """Instantiate the source class registered for `spec.kind` (lazy import)."""
    module_name, cls_name = REGISTRY[spec.kind].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(spec, seed)


# ---------------------------------------------------------------------------------------------- walking


def is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def safe_text(path: str) -> str:
    """A UTF-8 string for any path (undecodable bytes shown as \\xNN) so it can be stored in Parquet."""
    if is_utf8(path):
        return path
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def walk_files(root: Path, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> Iterator[Path]:
    """Files under `root` with one of `extensions`, sorted, following directory symlinks without looping.

    Broken symlinks and symlink loops whose name has a wanted extension are yielded too, so that
    reading them records a reason instead of losing them.
    """
    seen_dirs: set[tuple[int, int]] = set()

    def visit(directory: Path) -> Iterator[Path]:
        try:
            st = directory.stat()
        except OSError as e:
            log.warning("cannot enter %s: %s", safe_text(str(directory)), e)
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            log.warning("skipping %s: directory already visited (symlink loop)", safe_text(str(directory)))
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            log.warning("cannot list %s: %s", safe_text(str(directory)), e)
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:  # symlink loop (ELOOP) and friends
                is_dir = False
            if is_dir:
                yield from visit(path)
            elif path.suffix.lower() in extensions:
                yield path

    yield from visit(root)


def require_dir(path: Path, what: str) -> None:
    """Config-level check run before any work (the CLI turns it into exit 2)."""
    from fakeclue_builder.config import ConfigError

    if not path.is_dir():
        raise ConfigError(f"{what}: {path} is not a directory; fix the path in the config or --set it")
