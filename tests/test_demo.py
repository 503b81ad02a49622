"""The offline demo sources: exact upstream layouts, decodable videos with faces, distinct images, determinism."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import cv2
import pytest
from PIL import Image

from fakeclue_builder import demo, images
from fakeclue_builder.records import CATEGORIES
from fakeclue_builder.sources.ffpp import detect_largest_face

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def files_under(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def image_format(path: Path) -> str:
    with Image.open(path) as img:
        img.load()
        return img.format


def test_genimage_layout(demo_sources):
    base = demo_sources["genimage"]
    assert base.name == "GenImage"
    assert sorted(p.name for p in base.iterdir()) == ["Midjourney", "stable_diffusion_v_1_4"]
    for generator in base.iterdir():
        (subset,) = list(generator.iterdir())
        assert sorted(p.name for p in subset.iterdir()) == ["train", "val"]
        for split in subset.iterdir():
            assert sorted(p.name for p in split.iterdir()) == ["ai", "nature"]
            ai, nature = sorted((split / "ai").iterdir()), sorted((split / "nature").iterdir())
            assert 4 <= len(ai) <= 6 and 4 <= len(nature) <= 6
            assert {image_format(p) for p in ai} == {"PNG"} and {p.suffix for p in ai} == {".png"}
            assert {image_format(p) for p in nature} == {"JPEG"} and {p.suffix for p in nature} == {".JPEG"}
    assert (base / "stable_diffusion_v_1_4" / "imagenet_ai_0419_sdv4" / "train" / "ai").is_dir()


def test_chameleon_folders_and_stills_layout(demo_sources):
    test = demo_sources["chameleon"] / "test"
    assert sorted(p.name for p in test.iterdir()) == ["0_real", "1_fake"]
    assert {image_format(p) for p in (test / "0_real").iterdir()} == {"JPEG"}
    assert {image_format(p) for p in (test / "1_fake").iterdir()} == {"PNG"}
    for name in ("folder_real", "folder_fake"):
        root = demo_sources[name]
        assert list(root.glob("*.*")) and list((root / "nested" / "deeper").glob("*.*"))  # top level and nested
    assert len(list(demo_sources["satellite"].glob("*.jpg"))) >= 4
    pages = sorted(demo_sources["documents"].glob("*.jpg"))
    assert len(pages) >= 4 and Image.open(pages[0]).size == (256, 320)


def test_fakeclue_release_json_and_zip(demo_sources):
    records = json.loads(demo_sources["fakeclue_json"].read_text())
    assert demo_sources["fakeclue_json"].relative_to(demo_sources["fakeclue"]).as_posix() == "data_json/test.json"
    with zipfile.ZipFile(demo_sources["fakeclue_zip"]) as zf:
        assert sorted(zf.namelist()) == sorted(r["image"] for r in records)
        for r in records:
            source, kind = r["image"].split("/")[:2]
            assert source in {"chameleon", "doc", "ff++", "genimage", "satellite"} and kind in {"real", "fake"}
            assert r["label"] == (1 if kind == "real" else 0) and r["cate"] in CATEGORIES
            human, gpt = r["conversations"]
            assert human == {"from": "human", "value": "<image>Does the image looks real/fake?"}
            assert gpt["from"] == "gpt" and gpt["value"].startswith(f"This is a {kind} image. ")
            with Image.open(io.BytesIO(zf.read(r["image"]))) as img:
                assert img.size == (r["width"], r["height"])
                assert img.format == ("PNG" if r["image"].endswith(".png") else "JPEG")
    assert {r["label"] for r in records} == {0, 1} and "deepfake" in {r["cate"] for r in records}


def test_ffpp_layout_and_videos_decode_with_faces(demo_sources):
    root = demo_sources["ffpp"]
    videos = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4"))
    assert videos == [
        "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4",
        "manipulated_sequences/Face2Face/c23/videos/001_000.mp4",
        "original_sequences/youtube/c23/videos/000.mp4",
        "original_sequences/youtube/c23/videos/001.mp4",
    ]
    for rel in videos:
        cap = cv2.VideoCapture(str(root / rel))
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == demo.VIDEO_FRAMES
        frames = []
        while (frame := cap.read()[1]) is not None:
            frames.append(frame)
        cap.release()
        assert len(frames) == demo.VIDEO_FRAMES and frames[0].shape == (256, 256, 3)
        faces = [detect_largest_face(f, 40) for f in frames]
        assert all(faces), f"{rel}: Haar found no face in frames {[i for i, f in enumerate(faces) if not f]}"


def test_manipulated_videos_differ_from_their_targets(demo_sources):
    root = demo_sources["ffpp"]

    def first_frame(rel):
        cap = cv2.VideoCapture(str(root / rel))
        frame = cap.read()[1]
        cap.release()
        return frame.astype(int)

    original = first_frame("original_sequences/youtube/c23/videos/000.mp4")
    fake = first_frame("manipulated_sequences/Deepfakes/c23/videos/000_001.mp4")
    diff = abs(original - fake).mean(axis=-1)
    assert diff[80:180, 80:180].mean() > 5 * max(diff[:40].mean(), 0.5)  # the face changed, the background did not


def test_still_images_are_not_near_duplicates(demo_sources):
    root = demo_sources["genimage"].parent.parent
    paths = [p for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    assert len(paths) >= 50
    hashes = [int(images.phash_hex(Image.open(p)), 16) for p in paths]
    for i, a in enumerate(hashes):
        for j in range(i + 1, len(hashes)):
            assert bin(a ^ hashes[j]).count("1") > 4, (paths[i], paths[j])


def test_build_is_deterministic_idempotent_and_small(demo_sources, tmp_path):
    root = demo_sources["genimage"].parent.parent
    other = demo.make_demo_sources(tmp_path / "b", seed=0)
    assert set(other) == set(demo_sources)
    a, b = files_under(root), files_under(tmp_path / "b")
    assert a.keys() == b.keys()
    still = {k for k in a if not k.endswith(".mp4")}  # mp4 bytes are OpenCV's business; they matched in 4.14
    assert {k: a[k] for k in still} == {k: b[k] for k in still}
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 10 * 2**20
    marker = tmp_path / "b" / ".complete"
    mtime = marker.stat().st_mtime_ns
    assert demo.make_demo_sources(tmp_path / "b", seed=0) == other and marker.stat().st_mtime_ns == mtime
    demo.make_demo_sources(tmp_path / "b", seed=1)  # another seed rebuilds in place
    c = files_under(tmp_path / "b")
    assert c.keys() == a.keys() and c["folder_real/photo_000.jpg"] != a["folder_real/photo_000.jpg"]


def test_bench_images(tmp_path):
    paths = demo.make_bench_images(tmp_path / "one", 8, seed=3, workers=1)
    assert paths == sorted(paths) and sorted(int(p.stem) for p in paths) == list(range(8))
    assert {p.parent.name for p in paths} == {"jpeg", "png"}
    for p in paths:
        with Image.open(p) as img:
            img.load()
            assert img.format == {"jpeg": "JPEG", "png": "PNG"}[p.parent.name]
            assert all(256 <= s <= 1024 for s in img.size)
    pooled = demo.make_bench_images(tmp_path / "two", 8, seed=3, workers=2)  # worker processes, same bytes
    assert [p.relative_to(tmp_path / "two") for p in pooled] == [p.relative_to(tmp_path / "one") for p in paths]
    assert files_under(tmp_path / "one") == files_under(tmp_path / "two")


@pytest.mark.parametrize("kind", sorted(demo.KINDS))
def test_every_kind_of_demo_image_is_seeded(kind):
    a = demo.KINDS[kind](demo.rng_for(0, "k"), 200, 150)
    assert a.shape == (150, 200, 3) and a.dtype.name == "uint8"
    assert (a == demo.KINDS[kind](demo.rng_for(0, "k"), 200, 150)).all()
    assert not (a == demo.KINDS[kind](demo.rng_for(1, "k"), 200, 150)).all()
