"""Offline, deterministic demo datasets in the exact upstream layouts of FORMATS.md, and benchmark images.

Reals are crops of scikit-image's photographs, fakes procedural or warped+recoloured photos; each still image is
redrawn until its pHash is far from all earlier ones (dedup keeps them all). FF++ videos move the astronaut's face.
Same seed => byte-identical files (images, zip, json; the mp4 files too with OpenCV 4.x)."""

from __future__ import annotations

import functools
import io
import json
import logging
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEMO_VERSION = 3
JPEG_QUALITY = 90
MIN_PHASH_DISTANCE = 10  # well above collect.dedup.phash_threshold's default (4): margin for JPEG loss
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
          "retina", "camera", "coins", "clock", "moon", "stereo_motorcycle")  # fmt: skip
TEXTURES = ("grass", "gravel", "brick", "moon")
GENIMAGE = {"stable_diffusion_v_1_4": ("imagenet_ai_0419_sdv4", "{i:03d}_sdv4_{j:05d}.png"),
            "Midjourney": ("imagenet_midjourney", "Midjourney_{i:03d}_{j:05d}.png")}  # fmt: skip
SUBDIRS = ("genimage", "chameleon", "ffpp", "folder_real", "folder_fake", "fakeclue", "satellite", "documents")
ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h of the face in skimage.data.astronaut() (512 x 512)
VIDEO_FRAMES, VIDEO_FPS, VIDEO_SIZE = 12, 10.0, 256
QUESTION = "<image>Does the image looks real/fake?"
FAKECLUE_ITEMS = (  # (image path pattern, label, cate, kind, evidence)
    ("genimage/fake/{j:05d}.png", 0, "animal", "procedural", "the fur texture is unnaturally smooth; edges melt"),
    ("genimage/real/{j:05d}.jpg", 1, "object", "photo", "lighting and shadows are consistent; natural sensor noise"),
    ("chameleon/fake/{j:05d}.jpg", 0, "scene", "warped", "straight structures bend slightly; colours drift"),
    ("doc/real/{j:05d}.jpg", 1, "doc", "document", "the text lines are legible and evenly spaced"),
    ("doc/fake/{j:05d}.png", 0, "doc", "procedural", "the characters are illegible blobs; no reading order"),
    ("satellite/real/{j:05d}.jpg", 1, "satellite", "aerial", "roads are continuous; fields follow the terrain"),
    ("ff++/fake/Deepfakes/c23/frames/000_001/{j:03d}.png", 0, "deepfake", "face", "the skin is waxy; the jaw blurs"),
)


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """An RGB uint8 array of one scikit-image sample picture (grey ones stacked to RGB)."""
    from skimage import data

    img = getattr(data, name)()
    img = img[0] if name == "stereo_motorcycle" else img
    return np.ascontiguousarray(np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3])


def rng_for(seed: int, *keys) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on call order or process)."""
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


@functools.lru_cache(maxsize=1)
def noise_tiles() -> np.ndarray:
    """Two fixed 1024 x 1024 x 3 tiles of small offsets: adding one and subtracting the other is cheap noise."""
    return rng_for(0, "noise").integers(0, 3, size=(2, 1024, 1024, 3), dtype=np.uint8)


def photo_variant(rng, width: int, height: int, noise: bool = True, name: str | None = None) -> np.ndarray:
    """A random crop of a photo, resized, maybe mirrored, colour-jittered, with mild noise (uint8 ops, fast)."""
    import cv2

    src = photo(name or PHOTOS[int(rng.integers(len(PHOTOS)))])
    ph, pw = src.shape[:2]
    ch = max(16, int(min(ph, pw * height / width) * rng.uniform(0.35, 1.0)))
    cw = max(16, min(pw, int(ch * width / height)))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    img = cv2.resize(src[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_LINEAR)
    img = cv2.flip(img, 1) if rng.random() < 0.5 else img
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * rng.uniform(0.85, 1.15, size=3), 0, 255)
    img = cv2.LUT(img, lut.astype(np.uint8)[None])
    if noise:
        (pos, neg), oy, ox = noise_tiles(), int(rng.integers(0, 1025 - height)), int(rng.integers(0, 1025 - width))
        img = cv2.subtract(cv2.add(img, pos[oy : oy + height, ox : ox + width]), neg[oy : oy + height, ox : ox + width])
    return img


def procedural_fake(rng, width: int, height: int) -> np.ndarray:
    """Smooth random gradients + coloured Gaussian blobs + noise: obviously synthetic, unique per seed."""
    import cv2

    grid = rng.uniform(0, 255, size=(int(rng.integers(3, 7)),) * 2 + (3,)).astype(np.float32)
    img = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.25) * min(width, height)
        mask = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - mask) + rng.uniform(0, 255, size=3).astype(np.float32) * mask
    return np.clip(img + rng.normal(0.0, 3.0, size=img.shape), 0, 255).astype(np.uint8)


def warped_fake(rng, width: int, height: int) -> np.ndarray:
    """A photo crop with a sinusoidal warp and a channel-mixing recolour."""
    import cv2

    img = photo_variant(rng, width, height, noise=False)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    amp, period = rng.uniform(4, 12), rng.uniform(20, 60)
    map_x = xx + amp * np.sin(yy / period + rng.uniform(0, 6.3))
    map_y = yy + amp * np.cos(xx / period + rng.uniform(0, 6.3))
    img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mix = (np.eye(3) * 0.6 + rng.uniform(0.0, 0.4, size=(3, 3))).astype(np.float32)
    return np.clip(img.astype(np.float32) @ mix.T, 0, 255).astype(np.uint8)


def face_still(rng, width: int, height: int) -> np.ndarray:
    """A jittered crop around the astronaut's face (a stand-in for an FF++ frame in the FakeClue release)."""
    import cv2

    x, y, w, h = ASTRONAUT_FACE
    m, dx, dy = int(rng.integers(10, 60)), int(rng.integers(-15, 16)), int(rng.integers(-15, 16))
    crop = photo("astronaut")[max(0, y - m + dy) : y + h + m + dy, max(0, x - m + dx) : x + w + m + dx]
    crop = cv2.flip(crop, 1) if rng.random() < 0.5 else crop
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def aerial_tile(rng, width: int, height: int) -> np.ndarray:
    """A patchwork of tinted field textures crossed by roads: the demo's stand-in for an aerial tile."""
    import cv2

    img = np.zeros((height, width, 3), np.float32)
    xs = sorted({0, width, *rng.integers(width // 5, width - width // 5, size=2).tolist()})
    ys = sorted({0, height, *rng.integers(height // 5, height - height // 5, size=2).tolist()})
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            tex = photo(TEXTURES[int(rng.integers(len(TEXTURES)))])[..., 0]
            ty, tx = int(rng.integers(0, tex.shape[0] - (y1 - y0))), int(rng.integers(0, tex.shape[1] - (x1 - x0)))
            tint = np.array([rng.uniform(60, 160), rng.uniform(90, 180), rng.uniform(40, 110)], np.float32)
            img[y0:y1, x0:x1] = tex[ty : ty + y1 - y0, tx : tx + x1 - x0, None] / 255.0 * tint + tint * 0.4
    for _ in range(int(rng.integers(1, 3))):
        p0 = (int(rng.integers(0, width)), 0) if rng.random() < 0.5 else (0, int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), height) if p0[1] == 0 else (width, int(rng.integers(0, height)))
        cv2.line(img, p0, p1, (150.0, 150.0, 145.0), int(rng.integers(3, 8)))
    return np.clip(img, 0, 255).astype(np.uint8)


def document_page(rng, width: int, height: int) -> np.ndarray:
    """A page assembled from text-line strips of skimage's scanned page, sometimes with a title and a figure."""
    page, canvas = photo("page")[..., 0], np.full((height, width), 235, np.uint8)
    y, margin = int(rng.integers(8, 24)), int(rng.integers(8, 20))
    inner = width - 2 * margin
    if rng.random() < 0.6:
        canvas[y : y + 14, margin : width - margin - int(rng.integers(0, width // 3))] = 40
        y += 24
    while y < height - margin - 16:
        if rng.random() < 0.15:
            fh = min(int(rng.integers(40, 90)), height - margin - y)
            canvas[y : y + fh, margin : width - margin] = photo_variant(rng, inner, fh).mean(axis=-1).astype(np.uint8)
            y += fh + 6
            continue
        sh = int(rng.integers(12, 28))
        sy, sx = int(rng.integers(0, page.shape[0] - sh)), int(rng.integers(0, page.shape[1] - inner))
        canvas[y : y + sh, margin : width - margin] = page[sy : sy + sh, sx : sx + inner]
        y += sh + int(rng.integers(0, 6))
    return np.stack([canvas] * 3, axis=-1)


KINDS = {"photo": photo_variant, "procedural": procedural_fake, "warped": warped_fake, "face": face_still,
         "aerial": aerial_tile, "document": document_page}  # fmt: skip


@dataclass
class DemoImages:
    """Makes distinct demo images: each is redrawn until its pHash is far from every earlier one."""

    seed: int
    root: Path  # keys are paths relative to it, so the bytes do not depend on where the demo is built
    hashes: list[int] = field(default_factory=list)

    def make(self, kind: str, key: str, size: tuple[int, int]) -> np.ndarray:
        from fakeclue_builder.images import phash_hex

        for attempt in range(50):
            arr = KINDS[kind](rng_for(self.seed, kind, key, attempt), *size)
            h = int(phash_hex(Image.fromarray(arr)), 16)
            if all(bin(h ^ other).count("1") >= MIN_PHASH_DISTANCE for other in self.hashes):
                self.hashes.append(h)
                return arr
        raise RuntimeError(f"could not make a distinct demo image for {key!r}")

    def save(self, path: Path, kind: str, size: tuple[int, int] | None = None) -> Path:
        key = path.relative_to(self.root).as_posix()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(self.make(kind, key, size or self.size(key)), path.suffix))
        return path

    def size(self, key: str) -> tuple[int, int]:  # 192-320 px a side, so sizes vary as upstream
        rng = rng_for(self.seed, "size", key)
        return int(rng.integers(192, 321)), int(rng.integers(192, 321))


def encode(arr: np.ndarray, suffix: str) -> bytes:
    """JPEG (quality 90) or PNG bytes; PIL writes no timestamps or other run-dependent metadata."""
    buf, jpeg = io.BytesIO(), suffix.lower() in (".jpg", ".jpeg")
    options = {"format": "JPEG", "quality": JPEG_QUALITY} if jpeg else {"format": "PNG", "compress_level": 1}
    Image.fromarray(arr).save(buf, **options)
    return buf.getvalue()


def build_genimage(root: Path, dm: DemoImages, n: int) -> None:
    """GenImage/<generator>/<subset>/{train,val}/{ai,nature}/*: fakes as PNG, ImageNet photos as JPEG."""
    for g, (generator, (subset, ai_name)) in enumerate(GENIMAGE.items()):
        for split in ("train", "val"):
            leaf = root / "GenImage" / generator / subset / split
            for j in range(n):
                dm.save(leaf / "ai" / ai_name.format(i=g * 10 + (split == "val"), j=j), ("procedural", "warped")[j % 2])
                dm.save(leaf / "nature" / f"n{1440764 + j:08d}_{100 * g + j}.JPEG", "photo")


def build_plain(root: Path, dm: DemoImages, n: int) -> None:
    """Chameleon (test/{0_real,1_fake}), plain real/fake folders (half nested), aerial tiles, document pages."""
    for j in range(n):
        dm.save(root / "chameleon" / "test" / "0_real" / f"real_{j:04d}.jpg", "photo", (320, 240))
        dm.save(root / "chameleon" / "test" / "1_fake" / f"fake_{j:04d}.png", "warped", (256, 256))
        sub = Path("nested/deeper") if j % 2 else Path(".")
        dm.save(root / "folder_real" / sub / f"photo_{j:03d}.jpg", "photo")
        dm.save(root / "folder_fake" / sub / f"fake_{j:03d}.png", "procedural")
        dm.save(root / "satellite" / f"tile_{j:04d}.jpg", "aerial", (256, 256))
        dm.save(root / "documents" / f"page_{j:04d}.jpg", "document", (256, 320))


def build_fakeclue(root: Path, dm: DemoImages, n: int) -> None:
    """A tiny released FakeClue: data_json/test.json (LLaVA-style records) and test.zip with the images."""
    records, members = [], []
    for j in range(n):
        pattern, label, cate, kind, evidence = FAKECLUE_ITEMS[j % len(FAKECLUE_ITEMS)]
        rel = pattern.format(j=j)
        w, h = dm.size("fakeclue/" + rel)
        members.append((rel, encode(dm.make(kind, "fakeclue/" + rel, (w, h)), Path(rel).suffix)))
        answer = f"This is a {'real' if label == 1 else 'fake'} image. {evidence[0].upper()}{evidence[1:]}."
        records.append({"image": rel, "label": label, "cate": cate, "width": w, "height": h, "conversations": [
            {"from": "human", "value": QUESTION}, {"from": "gpt", "value": answer}]})  # fmt: skip
    (root / "data_json").mkdir(parents=True, exist_ok=True)
    (root / "data_json" / "test.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    with zipfile.ZipFile(root / "test.zip", "w") as zf:
        for rel, data in members:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))  # fixed time: a byte-reproducible zip
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def face_frames(base: np.ndarray, flip: bool, phase: float, zoom: float) -> list[np.ndarray]:
    """BGR 256x256 frames around the astronaut's face with small shifts, rotations and zooms."""
    import cv2

    x, y, w, h = ASTRONAUT_FACE
    src = np.ascontiguousarray(base[:, ::-1, ::-1] if flip else base[..., ::-1])
    cx, cy = (base.shape[1] - x - w / 2) if flip else (x + w / 2), y + h / 2
    frames = []
    for t in np.arange(VIDEO_FRAMES) + phase:
        m = cv2.getRotationMatrix2D((cx, cy), 10.0 * np.sin(0.9 * t), zoom * (1 + 0.04 * np.sin(0.4 * t)))
        m[:, 2] += (VIDEO_SIZE / 2 - cx + 4 * np.sin(0.7 * t), VIDEO_SIZE / 2 - cy + 3 * np.cos(0.5 * t))
        frames.append(cv2.warpAffine(src, m, (VIDEO_SIZE, VIDEO_SIZE), borderMode=cv2.BORDER_REFLECT))
    return frames


def manipulated_face(method: str) -> np.ndarray:
    """The astronaut with the face region altered: mirrored + tinted (Deepfakes) or a stretched mouth (Face2Face)."""
    import cv2

    img = photo("astronaut").astype(np.float32)
    x, y, w, h = ASTRONAUT_FACE
    face = img[y : y + h, x : x + w]
    new = face.copy()
    if method == "Deepfakes":
        new = cv2.GaussianBlur(face[:, ::-1], (5, 5), 0) * np.array([1.08, 0.95, 0.9], np.float32)
    else:
        mouth = cv2.resize(face[h // 2 : h // 2 + h // 3], (w, h - h // 2), interpolation=cv2.INTER_LINEAR)
        new[h // 2 :] = cv2.GaussianBlur(mouth, (3, 3), 0) * np.array([0.95, 1.0, 1.1], np.float32)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (w * 2 // 5, h // 2 - 2), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (15, 15), 0)[..., None]
    img[y : y + h, x : x + w] = face * (1 - mask) + new * mask
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """An MPEG-4 Part 2 ('mp4v') video at 10 fps."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (VIDEO_SIZE, VIDEO_SIZE))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the 'mp4v' codec; install opencv-python-headless<5")
    for frame in frames:
        writer.write(frame)
    writer.release()


def build_ffpp(root: Path) -> None:
    """original_sequences/youtube/c23/videos/{000,001}.mp4 and manipulated Deepfakes/000_001, Face2Face/001_000."""
    motion = {"000": dict(flip=False, phase=0.0, zoom=1.0), "001": dict(flip=True, phase=3.0, zoom=1.1)}
    for video, params in motion.items():
        frames = face_frames(photo("astronaut"), **params)
        write_video(root / "original_sequences/youtube/c23/videos" / f"{video}.mp4", frames)
    for method, video in (("Deepfakes", "000_001"), ("Face2Face", "001_000")):
        frames = face_frames(manipulated_face(method), **motion[video.split("_")[0]])
        write_video(root / "manipulated_sequences" / method / "c23/videos" / f"{video}.mp4", frames)


def demo_paths(out_dir: Path) -> dict[str, Path]:
    """Name -> path of each demo dataset, as the source configs want them."""
    paths = {name: out_dir / name for name in SUBDIRS}
    paths["genimage"] = out_dir / "genimage" / "GenImage"
    paths["fakeclue_json"] = out_dir / "fakeclue" / "data_json" / "test.json"
    paths["fakeclue_zip"] = out_dir / "fakeclue" / "test.zip"
    return paths


def make_demo_sources(out_dir: Path, seed: int = 0, scale: int = 1) -> dict[str, Path]:
    """Build (or reuse, if built with this seed and scale) the demo datasets: scale x 4-5 images per leaf folder,
    scale x 7 FakeClue records, four 12-frame FF++ videos. Returns name -> path for the source configs."""
    out_dir = Path(out_dir)
    stamp = {"version": DEMO_VERSION, "seed": seed, "scale": scale}
    marker = out_dir / ".complete"
    if _read_json(marker) == stamp:
        log.info("demo sources in %s already built (seed %d, scale %d)", out_dir, seed, scale)
        return demo_paths(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for name in SUBDIRS:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    dm = DemoImages(seed, out_dir)
    build_genimage(out_dir / "genimage", dm, 4 * scale)
    build_plain(out_dir, dm, 5 * scale)
    build_fakeclue(out_dir / "fakeclue", dm, len(FAKECLUE_ITEMS) * scale)
    build_ffpp(out_dir / "ffpp")
    marker.write_text(json.dumps(stamp, sort_keys=True) + "\n")
    log.info("built demo sources in %s (%d distinct still images, 4 videos)", out_dir, len(dm.hashes))
    return demo_paths(out_dir)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing or half-written marker: build again
        return None


def bench_image(job: tuple[Path, int, int, float]) -> Path:
    """One benchmark image; its own RNG, so the bytes do not depend on which worker made it."""
    import cv2

    out_dir, index, seed, png_fraction = job
    rng = rng_for(seed, "bench", index)
    is_png = bool(rng.random() < png_fraction)
    width, height = (int(v) for v in rng.integers(256, 1025, size=2))
    img = photo_variant(rng, width, height, noise=not is_png)[..., ::-1]  # noise would make PNG 2x slower
    png_filter = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB] if hasattr(cv2, "IMWRITE_PNG_FILTER") else []
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, *png_filter] if is_png else [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    ok, buf = cv2.imencode(".png" if is_png else ".jpg", img, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode benchmark image {index}")
    path = out_dir / ("png" if is_png else "jpeg") / f"{index:05d}.{'png' if is_png else 'jpg'}"
    path.write_bytes(buf.tobytes())
    return path


def _init_bench_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def make_bench_images(out_dir: Path, n: int, seed: int = 0, png_fraction: float = 0.5, workers: int = 2) -> list[Path]:
    """`n` photo-like images (JPEG q90 / PNG, 256-1024 px a side) in out_dir/{jpeg,png}/NNNNN.ext, sorted."""
    import concurrent.futures
    import multiprocessing

    out_dir = Path(out_dir)
    stamp = {"version": DEMO_VERSION, "n": n, "seed": seed, "png_fraction": png_fraction}
    marker = out_dir / ".bench-complete"
    if _read_json(marker) == stamp:
        return sorted(p for sub in ("jpeg", "png") for p in (out_dir / sub).iterdir())
    marker.unlink(missing_ok=True)
    for sub in ("jpeg", "png"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / sub).mkdir(parents=True)
    jobs = [(out_dir, i, seed, png_fraction) for i in range(n)]
    if workers <= 1 or n < 4 * workers:
        paths = [bench_image(job) for job in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")  # never fork a parent whose OpenCV threads may hold locks
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_bench_worker) as pool:
            paths = list(pool.map(bench_image, jobs, chunksize=max(1, min(64, n // (4 * workers)))))
    marker.write_text(json.dumps(stamp, sort_keys=True) + "\n")
    log.info("wrote %d benchmark images to %s", n, out_dir)
    return sorted(paths)
