"""Reading, validating, hashing and storing images WITHOUT ever re-encoding them.

`read_file` and `probe_image` turn every kind of bad input into an `ImageRejected` whose `.reason` is a key
of `REASONS` (callers make it a dropped row); `BlobStore` keeps the original bytes content-addressed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
import struct
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)

REASONS: dict[str, str] = {
    "missing_file": "the path does not exist",
    "empty_file": "the file is 0 bytes long",
    "truncated_image": "the image data ends before the image does (partial download or copy)",
    "not_an_image": "the bytes are not an image format Pillow recognises",
    "corrupt_image": "the image header parses but the pixel data does not decode",
    "unsupported_format": "a readable image in a format not listed in collect.allowed_formats",
    "decompression_bomb": "the declared pixel count exceeds collect.max_image_pixels",
    "corrupt_video": "the video cannot be opened or a sampled frame cannot be read",
    "no_face_detected": "no face was found in the sampled video frame",
    "video_too_short": "the video has fewer frames than collect's frames_per_video asks for",
    "unreadable_file": "the file exists but cannot be opened or read (permissions, I/O error)",
    "broken_symlink": "a symbolic link whose target does not exist",
    "symlink_loop": "a symbolic link that (indirectly) points to itself",
    "not_a_file": "the path is a directory, FIFO, socket or device, not a regular file",
    "undecodable_filename": "the file name is not valid UTF-8",
    "duplicate_exact": "byte-identical to an image that was kept",
    "duplicate_near": "perceptually identical (pHash distance) to an image that was kept",
    "over_quota": "not sampled: the source or group quota was already filled",
    "ratio_balance": "not sampled: dropped to reach the configured fake:real ratio",
    "unexpected_error": "an unforeseen error while loading (a bug: please report it with the detail)",
    "unsafe_zip_member": "a zip member with an absolute path, '..' or a link, not extracted",
}

# PIL format -> file extension used in the blob store (MPO is a multi-picture JPEG)
FORMAT_EXT: dict[str, str] = {
    "JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif",
}  # fmt: skip
_FORMAT_ALIASES = {"MPO": "JPEG"}  # phone cameras write MPO (JPEG + extra pictures): allowed with JPEG
# signatures of formats we expect; an unparseable file that starts with one is corrupt, not "not an image"
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF",
          b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}  # fmt: skip
_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}  # fmt: skip
_RAN_OUT = (EOFError, SyntaxError, struct.error)  # what PIL raises when the data ends early
PHASH_MAX_SIDE = 128


class ImageRejected(Exception):
    """Input that is dropped, not a crash: `reason` is a key of REASONS, `detail` free text."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}; add it to images.REASONS")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ImageProbe:
    """What the file is, as stored (never rotated, never converted)."""

    format: str
    width: int
    height: int
    mode: str
    n_frames: int
    exif_orientation: int | None
    phash: str


def _show(path: Path | str) -> str:
    """A path as UTF-8 text (undecodable bytes as \\xNN) that Parquet and logs accept."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_file(path: Path) -> bytes:
    """The whole file, or ImageRejected saying why not. Never opens a FIFO or device."""
    shown = _show(path)
    try:
        link_mode = os.lstat(path).st_mode
        try:
            _require_regular(os.stat(path).st_mode, shown)
        except FileNotFoundError:
            if stat.S_ISLNK(link_mode):
                target = _show(os.readlink(path))
                raise ImageRejected("broken_symlink", f"{shown} -> {target} (target missing)") from None
            raise
        # O_NONBLOCK: if the path is swapped for a FIFO after the stat, open must still not hang
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb", buffering=0) as f:
            _require_regular(os.fstat(f.fileno()).st_mode, shown)
            data = f.readall()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageRejected("symlink_loop", f"{shown}: too many levels of symbolic links") from None
        if e.errno == errno.ENOENT:
            raise ImageRejected("missing_file", f"{shown} does not exist") from None
        raise ImageRejected("unreadable_file", f"{shown}: {e.strerror or e}") from None
    if not data:
        raise ImageRejected("empty_file", f"{shown} is 0 bytes")
    return data


def _require_regular(mode: int, shown: str) -> None:
    if not stat.S_ISREG(mode):
        raise ImageRejected("not_a_file", f"{shown} is {_FILE_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_pil_lock = threading.Lock()
_pil_state: list = [0, None]  # probes running in this process, PIL settings to restore after the last one


@contextmanager
def _our_limits() -> Iterator[None]:
    """While probes run: PIL's own pixel limit off (we enforce max_pixels, which may be above PIL's default)
    and truncated images never silently accepted; the caller's settings come back after the last probe."""
    with _pil_lock:
        if _pil_state[0] == 0:
            _pil_state[1] = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
        _pil_state[0] += 1
    try:
        yield
    finally:
        with _pil_lock:
            _pil_state[0] -= 1
            if _pil_state[0] == 0:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = _pil_state[1]


def probe_image(data: bytes, *, max_pixels: int, allowed_formats: Collection[str]) -> ImageProbe:
    """Identify, size-check and fully decode `data` (every frame) without modifying or re-encoding it."""
    with _our_limits():
        img = _open(data)
        with img:
            fmt, (width, height), mode = img.format or "UNKNOWN", img.size, img.mode
            if fmt not in allowed_formats and _FORMAT_ALIASES.get(fmt) not in allowed_formats:
                allowed = ", ".join(sorted(allowed_formats))
                raise ImageRejected("unsupported_format", f"format {fmt} is not in collect.allowed_formats ({allowed})")
            _check_pixels(width, height, max_pixels)
            with _decode_errors(0):
                n_frames = int(getattr(img, "n_frames", 1))
                if fmt in ("JPEG", "MPO") and n_frames == 1:  # a drafted MPO cannot seek to its next picture
                    # DCT scaling: libjpeg still entropy-decodes the whole scan (so truncation is caught)
                    # but skips most of the inverse DCT and colour conversion
                    img.draft("L" if mode in ("L", "RGB") else mode, (PHASH_MAX_SIDE, PHASH_MAX_SIDE))
                img.load()
                phash = phash_hex(img)
            orientation = _exif_orientation(img)
            for frame in range(1, n_frames):
                with _decode_errors(frame):
                    img.seek(frame)
                    _check_pixels(*img.size, max_pixels)
                    img.load()
    return ImageProbe(fmt, width, height, mode, n_frames, orientation, phash)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(BytesIO(data))
    except UnidentifiedImageError:
        webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        kind = "WEBP" if webp else next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
        if kind is not None:
            raise ImageRejected("corrupt_image", f"starts like a {kind} file but its header does not parse") from None
        raise ImageRejected("not_an_image", f"not a recognised image format (first bytes {data[:8]!r})") from None
    except Exception as e:  # a plugin choking on a malformed header
        raise ImageRejected("corrupt_image", f"header: {type(e).__name__}: {e}") from None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} px > collect.max_image_pixels = {max_pixels}")


@contextmanager
def _decode_errors(frame: int) -> Iterator[None]:
    """Decoding failures as reasons: running out of data is truncated_image, anything else corrupt_image."""
    where = f"frame {frame}: " if frame else ""
    try:
        yield
    except ImageRejected:
        raise
    except Exception as e:
        ran_out = isinstance(e, _RAN_OUT) or (isinstance(e, OSError) and "truncated" in str(e))
        reason = "truncated_image" if ran_out else "corrupt_image"
        raise ImageRejected(reason, f"{where}{type(e).__name__}: {e}") from None


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(274)
        return int(value) if value is not None else None
    except Exception:  # a malformed EXIF block does not make the pixels bad
        return None


def phash_hex(img: Image.Image) -> str:
    """imagehash.phash of `img` reduced to <= 128 px a side and converted to 8-bit grey; 16 hex chars."""
    return str(imagehash.phash(_small_grey(img)))


def _small_grey(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I;16"):
        img = img.convert("I")  # resize cannot take I;16
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # over white, so what is under transparent pixels does not count
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    elif mode not in ("L", "RGB", "I", "F"):
        img = img.convert("RGB")  # P, 1, CMYK, YCbCr, LAB, HSV
    scale = PHASH_MAX_SIDE / max(img.size)
    if scale < 1:  # a thumbnail without touching `img`; the same size for every copy of a photo
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)
    return _wide_to_l(img) if img.mode in ("I", "F") else img.convert("L")


def _wide_to_l(img: Image.Image) -> Image.Image:
    """32-bit integer or float grey to 8 bits: values in the 16-bit range scale by 1/257, others min-max."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode != "F" and lo >= 0 and hi <= 65535:
        lo, hi = 0.0, 65535.0
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def encode_png(img: Image.Image) -> bytes:
    """Lossless PNG bytes, for images we create (face crops); never used on original files."""
    buf = BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


class BlobStore:
    """Original bytes, content-addressed under `run_dir/blobs/ab/<sha256>.<ext>`, written atomically."""

    def __init__(self, run_dir: Path, mode: str = "hardlink"):
        if mode not in ("hardlink", "copy"):
            raise ValueError(f"blob mode must be 'hardlink' or 'copy', not {mode!r} (collect.blob_mode)")
        self.run_dir = Path(run_dir)
        self.mode = mode
        self._dirs_made: set[Path] = set()

    def path(self, rel: str) -> Path:
        return self.run_dir / rel

    def put(self, image_id: str, ext: str, data: bytes, src: Path | None = None) -> str:
        """Store `data` (a hardlink to `src` when possible) and return its path relative to the run dir."""
        if len(image_id) < 2 or image_id.strip("0123456789abcdef") or not ext.isalnum():
            raise ValueError(f"blob name must be <lower-case hex digest>.<alphanumeric ext>, got {image_id!r}.{ext!r}")
        rel = f"blobs/{image_id[:2]}/{image_id}.{ext}"
        dest = self.run_dir / rel
        if dest.exists():
            return rel
        if dest.parent not in self._dirs_made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._dirs_made.add(dest.parent)
        tmp = dest.parent / f".{image_id}.{ext}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        if self.mode == "hardlink" and src is not None:
            try:
                os.link(Path(src).resolve(), tmp)  # a symlinked source links its target (link(2) would not)
                if os.stat(tmp).st_size != len(data):  # the source changed since it was read
                    raise OSError(f"size of {_show(src)} changed since it was read")
                os.replace(tmp, dest)
                return rel
            except OSError as e:  # cross-device, not permitted, ...: copy the bytes instead
                log.debug("hardlink %s failed (%s); writing the bytes instead", _show(src), e)
                tmp.unlink(missing_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rel
