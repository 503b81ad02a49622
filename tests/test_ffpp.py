"""FF++ source: plan rows per video (labels, generators, groups) and face crops per sampled frame."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fakeclue_builder import config, images
from fakeclue_builder.config import ConfigError
from fakeclue_builder.records import FAKE, REAL
from fakeclue_builder.sources.base import LoadContext, build_source
from fakeclue_builder.sources.ffpp import FfppSource, frame_indices, margin_box, sample_frames

DEMO_METHODS = ["Deepfakes", "Face2Face"]


def make_source(root: Path, **kwargs) -> FfppSource:
    kwargs.setdefault("methods", DEMO_METHODS)
    return FfppSource(config.FfppSource(kind="ffpp", root=root, **kwargs), seed=0)


@pytest.fixture
def ctx(tmp_path) -> LoadContext:
    return LoadContext(blobs=images.BlobStore(tmp_path / "run", "copy"), max_pixels=10**8,
                       allowed_formats=frozenset({"JPEG", "PNG"}))  # fmt: skip


def plan(source: FfppSource) -> dict[str, list]:
    """video@method -> its plan rows, one per frame slot."""
    out: dict[str, list] = {}
    for row in source.list_rows():
        out.setdefault(row.meta["video"] + "@" + row.meta["method"], []).append(row)
    return out


def load_video(source: FfppSource, slots: list, ctx) -> list:
    return [out for row in slots for out in source.load(row, ctx)]


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_registry_builds_ffpp_source(demo_sources):
    spec = config.FfppSource(kind="ffpp", root=demo_sources["ffpp"], methods=DEMO_METHODS)
    assert isinstance(build_source(spec, seed=0), FfppSource)


def test_list_rows_labels_generators_groups(demo_sources):
    slots = plan(make_source(demo_sources["ffpp"], frames_per_video=3))
    assert sorted(slots) == ["000@original", "000_001@Deepfakes", "001@original", "001_000@Face2Face"]
    for video_slots in slots.values():  # one plan row per frame slot, all sharing the video's sampling key
        assert [r.meta["frame_slot"] for r in video_slots] == ["0000", "0001", "0002"]
        assert len({r.sample_key for r in video_slots}) == 1
    rows = {k: v[0] for k, v in slots.items()}
    original, fake = rows["000@original"], rows["000_001@Deepfakes"]
    assert (original.label, original.generator, original.quota_group) == (REAL, None, "original")
    assert (fake.label, fake.generator, fake.quota_group) == (FAKE, "Deepfakes", "Deepfakes")
    assert original.group_id == fake.group_id == "ffpp:000"  # a fake shares its target video's group
    assert rows["001_000@Face2Face"].group_id == rows["001@original"].group_id == "ffpp:001"
    assert rows["001_000@Face2Face"].generator == "Face2Face"
    for row in rows.values():
        assert row.cate == "deepfake" and row.kept and row.sample_key and row.image_id is None
        assert Path(row.source_path).is_file() and row.source_path.endswith(row.meta["video"] + ".mp4")
        assert row.meta["compression"] == "c23"


def test_sample_keys_depend_on_seed_not_on_order(demo_sources):
    spec = config.FfppSource(kind="ffpp", root=demo_sources["ffpp"], methods=DEMO_METHODS)
    keys = {r.source_path: r.sample_key for r in FfppSource(spec, seed=0).list_rows()}
    reversed_spec = config.FfppSource(kind="ffpp", root=demo_sources["ffpp"], methods=DEMO_METHODS[::-1])
    assert keys == {r.source_path: r.sample_key for r in FfppSource(reversed_spec, seed=0).list_rows()}
    assert keys != {r.source_path: r.sample_key for r in FfppSource(spec, seed=1).list_rows()}


def test_missing_root_or_method_folder_is_a_config_error(demo_sources, tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        list(make_source(tmp_path / "nope").list_rows())
    with pytest.raises(ConfigError, match="FaceSwap"):  # the default methods include FaceSwap; the demo has none
        list(make_source(demo_sources["ffpp"], methods=["Deepfakes", "FaceSwap"]).list_rows())
    with pytest.raises(ConfigError, match="c40"):
        list(make_source(demo_sources["ffpp"], compression="c40").list_rows())


def test_load_real_video_yields_face_crops(demo_sources, ctx):
    source = make_source(demo_sources["ffpp"], frames_per_video=5)
    slots = plan(source)["000@original"]
    row = slots[0]
    out = load_video(source, slots, ctx)
    assert len(out) == 5 and all(r.kept for r in out), [r.reason for r in out]  # the demo videos show a detectable face in every frame
    assert [r.frame_index for r in out] == frame_indices(12, 5)
    for crop in out:
        assert crop.kept and crop.format == "PNG" and crop.encoding == "png-lossless:face-crop"
        assert (crop.cate, crop.label, crop.group_id) == ("deepfake", REAL, "ffpp:000")
        assert crop.source_path == row.source_path  # the video, not a frame file
        data = (ctx.blobs.run_dir / crop.blob).read_bytes()
        assert hashlib.sha256(data).hexdigest() == crop.image_id and len(data) == crop.n_bytes
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == "PNG" and img.size == (crop.width, crop.height)
        x, y, w, h = (int(v) for v in crop.meta["crop_box"].split(","))
        assert (w, h) == (crop.width, crop.height) and x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256
        assert crop.meta["frame_index"] == str(crop.frame_index) and crop.meta["video"] == "000"
        assert 60 <= w <= 200  # a ~95 px face plus 30% margin on each side, clipped to the 256 px frame
    assert row.frame_index is None and "crop_box" not in row.meta  # the plan row itself is not mutated


def test_load_manipulated_video_keeps_method_and_group(demo_sources, ctx):
    source = make_source(demo_sources["ffpp"], frames_per_video=3)
    out = load_video(source, plan(source)["001_000@Face2Face"], ctx)
    assert len(out) == 3 and all(r.kept for r in out)
    assert {(r.label, r.generator, r.group_id, r.quota_group) for r in out} == {
        (FAKE, "Face2Face", "ffpp:001", "Face2Face")
    }
    assert len({r.image_id for r in out}) == 3  # different frames, different crops


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100, b"\x00\x00\x00\x18ftypmp42" + bytes(64)])
def test_broken_video_is_corrupt_video(tmp_path, ctx, content):
    root = make_tree(tmp_path)
    (root / "original_sequences/youtube/c23/videos/000.mp4").write_bytes(content)
    source = make_source(root)
    out = load_video(source, plan(source)["000@original"], ctx)
    assert len(out) == 8 and {(r.status, r.reason) for r in out} == {("dropped", "corrupt_video")}
    assert all(r.detail for r in out)


def test_video_without_face_is_no_face_detected(tmp_path, ctx):
    root = make_tree(tmp_path)
    gray = [np.full((128, 160, 3), 90 + i, np.uint8) for i in range(6)]
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4", gray)
    source = make_source(root, frames_per_video=4, methods=["Deepfakes"])
    out = load_video(source, plan(source)["000_003@Deepfakes"], ctx)
    assert len(out) == 4  # every frame slot is accounted for
    assert {(r.status, r.reason, r.group_id) for r in out} == {("dropped", "no_face_detected", "ffpp:000")}
    assert all("0/4 sampled frames" in r.detail for r in out)
    assert [r.frame_index for r in out] == frame_indices(6, 4)


def test_short_video_drops_the_slots_it_cannot_fill(tmp_path, ctx):
    root = make_tree(tmp_path)
    write_video(root / "original_sequences/youtube/c23/videos/000.mp4", [np.full((64, 64, 3), 80, np.uint8)] * 2)
    source = make_source(root, frames_per_video=4)
    out = load_video(source, plan(source)["000@original"], ctx)
    assert [r.reason for r in out] == ["no_face_detected", "no_face_detected", "video_too_short", "video_too_short"]


def test_missing_and_dangling_videos_are_dropped_with_reasons(tmp_path, ctx):
    root = make_tree(tmp_path)
    videos = root / "original_sequences/youtube/c23/videos"
    write_video(videos / "000.mp4", [np.zeros((64, 64, 3), np.uint8)])
    os.symlink(videos / "gone.mp4", videos / "001.mp4")
    source = make_source(root)
    rows = plan(source)
    (videos / "000.mp4").unlink()
    assert {r.reason for r in load_video(source, rows["000@original"], ctx)} == {"missing_file"}
    assert {r.reason for r in load_video(source, rows["001@original"], ctx)} == {"broken_symlink"}


def test_dropped_plan_row_passes_through(demo_sources, ctx):
    source = make_source(demo_sources["ffpp"])
    row = plan(source)["000@original"][0].drop("over_quota")
    assert list(source.load(row, ctx)) == [row]


def test_unreliable_frame_count_falls_back_to_counting(demo_sources, monkeypatch):
    video = demo_sources["ffpp"] / "original_sequences/youtube/c23/videos/000.mp4"
    real_capture = cv2.VideoCapture

    class LyingCapture:  # reports 1000 frames (or none) for a 12-frame video
        def __init__(self, path):
            self._cap = real_capture(path)

        def get(self, prop):
            return claimed if prop == cv2.CAP_PROP_FRAME_COUNT else self._cap.get(prop)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", LyingCapture)
    for claimed in (1000.0, 0.0, -1.0):
        frames = sample_frames(video, 4)
        assert [i for i, _ in frames] == frame_indices(12, 4)
        assert all(f.shape == (256, 256, 3) for _, f in frames)


def test_frame_indices_and_margin_box():
    assert frame_indices(12, 4) == [1, 4, 7, 10]
    assert frame_indices(3, 8) == [0, 1, 2]
    assert frame_indices(0, 8) == []
    idx = frame_indices(300, 8)
    assert len(idx) == 8 and idx == sorted(set(idx)) and idx[0] >= 0 and idx[-1] < 300
    assert margin_box((100, 100, 50, 40), 0.3, 640, 480) == (85, 88, 80, 64)
    assert margin_box((5, 5, 50, 50), 0.5, 60, 70) == (0, 0, 60, 70)  # clipped to the frame


def make_tree(root: Path) -> Path:
    """An FF++ skeleton with the demo's folders and no videos."""
    dirs = ["original_sequences/youtube/c23/videos", *(f"manipulated_sequences/{m}/c23/videos" for m in DEMO_METHODS)]
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    return root
