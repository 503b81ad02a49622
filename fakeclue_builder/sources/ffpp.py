"""FaceForensics++: sampled video frames -> face crops (each crop a new, losslessly encoded PNG).

  root/original_sequences/youtube/<compression>/videos/000.mp4          real, group "ffpp:000"
  root/manipulated_sequences/<Method>/<compression>/videos/000_003.mp4  fake, group "ffpp:000" (its target video)

A fake `000_003` puts the face of video 003 into video 000, so it shares the original 000's group: one identity
never straddles splits. Listing yields one plan row per frame slot (`frames_per_video` per video; no video is
opened); loading turns each slot into its face crop, or drops it with the reason (corrupt_video,
no_face_detected, video_too_short, missing_file, ...). A video is decoded once per process for all its slots.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fakeclue_builder import images
from fakeclue_builder.records import FAKE, REAL, Row
from fakeclue_builder.sources.base import VIDEO_EXTENSIONS, LoadContext, Source, require_dir, safe_text, walk_files

log = logging.getLogger(__name__)

CROP_ENCODING = "png-lossless:face-crop"
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
GROUP_PREFIX = "ffpp:"
SLOT = "frame_slot"  # meta key: which of the evenly spaced frames a plan row stands for


@dataclass(frozen=True)
class FaceCrop:
    """One face found in one frame: the frame index, the crop box (after margin and clipping) and the PNG bytes."""

    frame_index: int
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    png: bytes


class FfppSource(Source):
    """Original and manipulated FF++ videos; each sampled frame's largest face becomes one image row."""

    # -- listing ---------------------------------------------------------------------------------------
    def video_dirs(self) -> list[tuple[str, Path]]:
        """(method, videos dir) pairs; method "original" for the real YouTube sequences."""
        root = Path(self.spec.root)
        comp = self.spec.compression
        require_dir(root, f"source {self.name!r} (ffpp) root")
        dirs = [("original", root / "original_sequences" / "youtube" / comp / "videos")]
        dirs += [(m, root / "manipulated_sequences" / m / comp / "videos") for m in self.spec.methods]
        for method, directory in dirs:
            hint = "" if method == "original" else f" (or remove {method!r} from `methods`)"
            require_dir(directory, f"source {self.name!r} (ffpp) {method} videos at compression {comp!r}{hint}")
        return dirs

    def list_rows(self) -> Iterator[Row]:
        root = Path(self.spec.root)
        for method, directory in self.video_dirs():
            for path in walk_files(directory, VIDEO_EXTENSIONS):
                yield from self._plan_video(path, path.relative_to(root).as_posix(), method)

    def _plan_video(self, path: Path, rel: str, method: str) -> Iterator[Row]:
        """One plan row per frame slot: slot k becomes the k-th of `frames_per_video` evenly spaced frames.

        Planning opens no video (the frame count is read when loading), and every slot comes back as exactly
        one row — a face crop, or dropped with the reason — so `in == kept + dropped` holds frame by frame.
        """
        video = path.stem
        is_original = method == "original"
        target = video if is_original else video.split("_", 1)[0]
        if not is_original and "_" not in video:
            log.warning("FF++ video %s is not named <target>_<source>; grouping it by its full name", path)
        label, quota_group, generator = (REAL, "original", None) if is_original else (FAKE, method, method)
        for slot in range(self.spec.frames_per_video):
            meta = {"video": video, "method": method, "compression": self.spec.compression, SLOT: f"{slot:04d}"}
            yield self.plan_row(str(path), rel, label, quota_group, generator=generator, cate="deepfake",
                                group_id=GROUP_PREFIX + target, meta=meta)  # fmt: skip

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, row: Row, ctx: LoadContext) -> Iterator[Row]:
        """The face crop of this row's frame slot; a bad video or a frame without a face comes back dropped."""
        if not row.kept:
            yield row
            return
        video = video_crops(row.source_path, _file_version(row.source_path), self.spec.frames_per_video,
                            self.spec.min_face_size, self.spec.face_margin)
        slot = int(row.meta.get(SLOT, 0))
        if video.problem is not None:
            yield row.drop(*video.problem)
        elif slot >= len(video.indices):
            yield row.drop("video_too_short", f"{len(video.indices)} frame(s) decoded, slot {slot} has none")
        elif (crop := video.crops.get(video.indices[slot])) is None:
            row.frame_index = video.indices[slot]
            yield row.drop("no_face_detected", f"no face of >= {self.spec.min_face_size} px in frame "
                           f"{row.frame_index} ({len(video.crops)}/{len(video.indices)} sampled frames have one)")
        else:
            yield ctx.ingest(crop_row(row, crop), crop.png)


@dataclass(frozen=True)
class VideoCrops:
    """What one video gives: the sampled frame indices, the crop found in each (if any), or why it gave nothing."""

    indices: tuple[int, ...] = ()
    crops: dict = dataclasses.field(default_factory=dict)  # frame index -> FaceCrop
    problem: tuple[str, str] | None = None


def _file_version(path: str) -> tuple[int, int] | None:
    """(mtime, size) so that the per-process cache never serves a video that changed on disk."""
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


@functools.lru_cache(maxsize=4)  # the slots of one video arrive together: decode it once per process
def video_crops(source_path: str, version: tuple[int, int] | None, frames_per_video: int, min_face_size: int,
                margin: float) -> VideoCrops:
    path = Path(source_path)
    problem = check_readable(path)
    if problem is not None:
        return VideoCrops(problem=problem)
    frames = sample_frames(path, frames_per_video)
    if not frames:
        return VideoCrops(problem=("corrupt_video", f"OpenCV could not open or decode any frame of {safe_text(source_path)}"))
    crops = {}
    for index, frame in frames:
        crop = crop_face(frame, index, min_face_size, margin)
        if crop is None:
            log.debug("%s: no face in frame %d", source_path, index)
        else:
            crops[index] = crop
    return VideoCrops(indices=tuple(i for i, _ in frames), crops=crops)


def crop_row(row: Row, crop: FaceCrop) -> Row:
    """A copy of the video's plan row for one crop (the crop's bytes are ours: the encoding is recorded)."""
    x, y, w, h = crop.box
    meta = {**row.meta, "frame_index": str(crop.frame_index), "crop_box": f"{x},{y},{w},{h}"}
    return dataclasses.replace(row, frame_index=crop.frame_index, encoding=CROP_ENCODING, meta=meta)


def check_readable(path: Path) -> tuple[str, str] | None:
    """(reason, detail) if the video cannot be read at all, else None; cheap (stats and reads one byte).

    Same vocabulary as `images.read_file`, except that a 0-byte video is `corrupt_video`.
    """
    shown = safe_text(str(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return "broken_symlink", f"{shown} -> {safe_text(os.readlink(path))} (target missing)"
        return "missing_file", f"{shown} does not exist"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink_loop", f"{shown}: too many levels of symbolic links"
        return "unreadable_file", f"{shown}: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        return "not_a_file", f"{shown} is not a regular file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb", buffering=0) as f:
            first = f.read(1)
    except OSError as e:
        return "unreadable_file", f"{shown}: {e.strerror or e}"
    if not first:
        return "corrupt_video", f"{shown} is empty (0 bytes)"
    return None


# ---------------------------------------------------------------------------------------------- frames


def frame_indices(total: int, wanted: int) -> list[int]:
    """`wanted` evenly spaced frame indices in [0, total) (all frames if there are fewer)."""
    if total <= wanted:
        return list(range(total))
    step = total / wanted
    return sorted({min(total - 1, int(step * (i + 0.5))) for i in range(wanted)})


def _grab(path: Path, indices: list[int] | None) -> tuple[int, list[tuple[int, "object"]]]:
    """Decode sequentially (robust where seeking is not); (frames decoded, [(index, BGR frame)] for `indices`)."""
    import cv2

    cap, taken, n = cv2.VideoCapture(str(path)), [], 0
    wanted = set(indices or ())
    last = max(wanted) if wanted else None
    try:
        while cap.isOpened() and (last is None or n <= last) and cap.grab():
            if n in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    taken.append((n, frame))
            n += 1
    finally:
        cap.release()
    return n, taken


def sample_frames(path: Path, wanted: int) -> list[tuple[int, "object"]]:
    """Evenly spaced (index, BGR frame) pairs; [] if the video cannot be decoded at all.

    The container's frame count is trusted first; when it is missing or wrong (fewer frames decode than it
    claims), the frames are counted by decoding and the sampling is redone on the true count.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()
    if reported > 0:
        indices = frame_indices(reported, wanted)
        _, frames = _grab(path, indices)
        if len(frames) == len(indices):
            return frames
        log.debug("%s: frame count %d unreliable; counting frames", path, reported)
    total, _ = _grab(path, None)
    if total == 0:
        return []
    return _grab(path, frame_indices(total, wanted))[1]


# ---------------------------------------------------------------------------------------------- faces


@functools.lru_cache(maxsize=1)
def face_cascade():
    """The OpenCV Haar frontal-face cascade, loaded once per process."""
    import cv2

    path = os.path.join(cv2.data.haarcascades, HAAR_CASCADE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}; install opencv-python-headless<5 (5.x ships none)")
    return cascade


def detect_largest_face(frame, min_face_size: int) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest frontal face in a BGR frame, or None."""
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    size = (min_face_size, min_face_size)
    faces = face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=size)
    boxes = [tuple(int(v) for v in f) for f in faces]
    return max(boxes, key=lambda b: (b[2] * b[3], b)) if boxes else None


def margin_box(face: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The face box grown by `margin` x its size on each side, clipped to the frame; (x, y, w, h)."""
    x, y, w, h = face
    mx, my = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(width, x + w + mx), min(height, y + h + my)
    return x0, y0, x1 - x0, y1 - y0


def crop_face(frame, frame_index: int, min_face_size: int, margin: float) -> FaceCrop | None:
    """Detect, expand, clip, crop and PNG-encode the largest face of a BGR frame (None if there is none)."""
    import cv2
    from PIL import Image

    face = detect_largest_face(frame, min_face_size)
    if face is None:
        return None
    height, width = frame.shape[:2]
    x, y, w, h = margin_box(face, margin, width, height)
    patch = frame[y : y + h, x : x + w]
    rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB) if patch.ndim == 3 else cv2.cvtColor(patch, cv2.COLOR_GRAY2RGB)
    return FaceCrop(frame_index, (x, y, w, h), images.encode_png(Image.fromarray(rgb)))
