"""The collect stage end to end on fixtures in the exact upstream layouts, and on a corpus of bad input."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from fakeclue_builder import collect, images
from fakeclue_builder.records import FAKE, REAL
from fakeclue_builder.store import StageDir, read_rows
from tests.conftest import collect_config


def _run(cfg, run_dir: Path):
    summary = collect.run(cfg, run_dir)
    kept = list(StageDir(run_dir, "collect").iter_rows())
    dropped = read_rows(StageDir(run_dir, "collect").dropped_path)
    return summary, kept, dropped


def _stats(run_dir: Path) -> dict:
    return json.loads((run_dir / "collect" / "_stats.json").read_text())


def _assert_blobs_identical(kept, run_dir: Path) -> None:
    for row in kept:
        blob = run_dir / row.blob
        assert blob.is_file(), row.source_path
        if row.encoding is None:  # original bytes: identical to the source file
            src = row.source_path
            if "::" in src:
                continue  # zip member: checked against the archive in its own test
            assert blob.read_bytes() == Path(src).read_bytes(), src
        assert images.sha256_hex(blob.read_bytes()) == row.image_id


# ---------------------------------------------------------------------------------------------- sources


def test_all_demo_sources(demo_sources, tmp_path):
    cfg = collect_config([
        {"kind": "genimage", "root": str(demo_sources["genimage"])},
        {"kind": "chameleon", "root": str(demo_sources["chameleon"])},
        {"kind": "ffpp", "root": str(demo_sources["ffpp"]), "methods": ["Deepfakes", "Face2Face"],
         "frames_per_video": 3},
        {"kind": "folder", "name": "reals", "root": str(demo_sources["folder_real"]), "label": "real", "cate": "scene"},
        {"kind": "fakeclue", "json": str(demo_sources["fakeclue_json"]), "images": str(demo_sources["fakeclue_zip"])},
    ])
    summary, kept, dropped = _run(cfg, tmp_path / "run")
    stats = _stats(tmp_path / "run")
    assert stats["in"] == stats["kept"] + stats["dropped"] == summary.rows_in
    assert stats["kept"] == len(kept) and stats["dropped"] == len(dropped)
    by_source = {}
    for r in kept:
        by_source.setdefault(r.source, []).append(r)
    assert set(by_source) == {"genimage", "chameleon", "ffpp", "reals", "fakeclue"}
    gen = by_source["genimage"]
    assert {r.label for r in gen} == {REAL, FAKE}
    assert all((r.label == FAKE) == ("/ai/" in r.source_path) for r in gen)
    assert {r.generator for r in gen if r.label == FAKE} == {"stable_diffusion_v_1_4", "Midjourney"}
    assert all(r.generator is None for r in gen if r.label == REAL)
    cham = by_source["chameleon"]
    assert all(r.no_forced_artifacts == (r.label == FAKE) for r in cham)
    ff = by_source["ffpp"]
    assert all(r.cate == "deepfake" and r.format == "PNG" and r.encoding and r.frame_index is not None for r in ff)
    assert {r.label for r in ff} == {REAL, FAKE}
    assert all(r.cate == "scene" and r.label == REAL for r in by_source["reals"])
    fc = by_source["fakeclue"]
    assert all(r.release_caption and r.release_caption.startswith("This is a") for r in fc)
    assert all(r.cate for r in fc)
    _assert_blobs_identical(kept, tmp_path / "run")
    assert len({r.image_id for r in kept}) == len(kept)  # no exact duplicates survive


def test_fakeclue_zip_members_are_read_in_place_and_unsafe_ones_rejected(demo_copy, tmp_path):
    import zipfile

    zpath, jpath = demo_copy["fakeclue_zip"], demo_copy["fakeclue_json"]
    records = json.loads(jpath.read_text())
    good = records[0]
    with zipfile.ZipFile(zpath, "a") as z:
        z.writestr("../evil.png", z.read(good["image"]))
    records += [dict(good, image="../evil.png"), dict(good, image="/etc/passwd"), dict(good, image="doc/real/nope.jpg")]
    jpath.write_text(json.dumps(records))
    cfg = collect_config([{"kind": "fakeclue", "json": str(jpath), "images": str(zpath)}],
                         dedup={"exact": False, "near": False})
    _, kept, dropped = _run(cfg, tmp_path / "run")
    reasons = sorted(r.reason for r in dropped)
    assert reasons == ["missing_file", "unsafe_zip_member", "unsafe_zip_member"]
    with zipfile.ZipFile(zpath) as z:
        for row in kept:
            member = row.source_path.split("::", 1)[1]
            assert (tmp_path / "run" / row.blob).read_bytes() == z.read(member)
    assert not any(p.name == "evil.png" for p in tmp_path.rglob("*"))  # nothing extracted


def test_genimage_generator_filter_and_unknown_generator(demo_sources, tmp_path):
    from fakeclue_builder.config import ConfigError

    cfg = collect_config([{"kind": "genimage", "root": str(demo_sources["genimage"]), "generators": ["Midjourney"],
                           "splits": ["val"]}])
    _, kept, _ = _run(cfg, tmp_path / "a")
    assert kept and all("/Midjourney/" in r.source_path and "/val/" in r.source_path for r in kept)
    bad = collect_config([{"kind": "genimage", "root": str(demo_sources["genimage"]), "generators": ["DALLE9"]}])
    with pytest.raises(ConfigError, match="DALLE9"):
        collect.run(bad, tmp_path / "b")
    assert not (tmp_path / "b").exists()  # config errors surface before anything is written


# ---------------------------------------------------------------------------------------------- bad input


def _png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A tiny PNG whose header claims 50,000 x 50,000 pixels."""
    raw = bytearray(_png_bytes(np.zeros((8, 8, 3), np.uint8)))
    ihdr = raw[8 + 8: 8 + 8 + 13]
    ihdr[0:8] = struct.pack(">II", 50_000, 50_000)
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(raw)


def _unusual(folder: Path) -> dict[str, dict]:
    """Valid but unusual images that must be KEPT, with the properties expected."""
    astro = skdata.astronaut()
    specs = {}

    def save(name, img, expect, **kw):
        img.save(folder / name, **kw)
        specs[name] = expect

    save("cmyk.jpg", Image.fromarray(astro[:200, :200]).convert("CMYK"), {"mode": "CMYK", "format": "JPEG"}, quality=90)
    Image.fromarray((skdata.camera()[:160, :160].astype(np.uint16) * 257)).save(folder / "deep16.png")
    specs["deep16.png"] = {"format": "PNG", "mode_prefix": "I"}
    save("palette.png", Image.fromarray(skdata.coffee()[:150, :150]).convert("P"), {"mode": "P"})
    save("la.png", Image.fromarray(skdata.chelsea()[:140, :140]).convert("LA"), {"mode": "LA"})
    save("rgba.png", Image.fromarray(skdata.rocket()[:170, :170]).convert("RGBA"), {"mode": "RGBA"})
    frames = [Image.fromarray(np.roll(skdata.astronaut()[100:228, 100:228], 9 * i, axis=1)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    specs["anim.gif"] = {"format": "GIF", "n_frames": 3}
    frames2 = [Image.fromarray(np.roll(skdata.chelsea()[:128, :128], 11 * i, axis=0)) for i in range(3)]
    frames2[0].save(folder / "anim.webp", save_all=True, append_images=frames2[1:], duration=100)
    specs["anim.webp"] = {"format": "WEBP", "n_frames": 3}
    exif = Image.Exif()
    exif[274] = 6
    save("rotated.jpg", Image.fromarray(skdata.immunohistochemistry()[:120, :200]),
         {"exif_orientation": 6, "width": 200, "height": 120}, exif=exif.tobytes(), quality=90)
    return specs


def _bad(folder: Path) -> dict[str, str]:
    """Bad inputs: file name -> the reason its row must carry."""
    astro = skdata.astronaut()
    jpeg = io.BytesIO()
    Image.fromarray(astro).save(jpeg, format="JPEG", quality=90)
    png = _png_bytes(skdata.coffee())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) * 6 // 10])
    (folder / "truncated.png").write_bytes(png[: len(png) * 6 // 10])
    (folder / "notes.jpg").write_text("this is a text file, not a picture\n")
    Image.fromarray(astro[:64, :64]).save(folder / "icon.ico")
    (folder / "bomb.png").write_bytes(_bomb_png())
    os.symlink(folder / "gone.jpg", folder / "broken.jpg")
    os.symlink("selfloop.jpg", folder / "selfloop.jpg")
    os.mkfifo(folder / "pipe.jpg")  # must be refused without being opened (opening a FIFO blocks)
    (folder / "locked.jpg").write_bytes(jpeg.getvalue())
    os.symlink(folder, folder / "loopdir")  # a directory loop: must not hang or double-count
    os.close(os.open(os.path.join(os.fsencode(folder), b"bad\xffname.jpg"), os.O_CREAT | os.O_WRONLY))
    return {"empty.jpg": "empty_file", "truncated.jpg": "truncated_image", "truncated.png": "truncated_image",
            "notes.jpg": "not_an_image", "icon.ico": "unsupported_format", "bomb.png": "decompression_bomb",
            "broken.jpg": "broken_symlink", "selfloop.jpg": "symlink_loop", "pipe.jpg": "not_a_file",
            "locked.jpg": "unreadable_file", "bad\\xffname.jpg": "undecodable_filename"}


def _dups(folder: Path, later: Path) -> dict[str, str]:
    """cat.png in the first source; its copies in a source listed later (sources in config order win)."""
    base = skdata.chelsea()
    Image.fromarray(base).save(folder / "cat.png")
    later.mkdir()
    (later / "cat_copy.png").write_bytes((folder / "cat.png").read_bytes())
    Image.fromarray(base).save(later / "cat_reencoded.jpg", quality=92)
    return {"cat_copy.png": "duplicate_exact", "cat_reencoded.jpg": "duplicate_near"}


@pytest.fixture
def bad_corpus(tmp_path, demo_sources, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    expected_bad = _bad(folder)
    expected_dups = _dups(folder, tmp_path / "later")
    unusual = _unusual(folder)
    locked = folder / "locked.jpg"
    locked.chmod(0)
    if os.geteuid() == 0:
        # root reads mode-000 files, so the permission error a normal user gets is injected at the read
        real_open = images.os.open

        def deny(path, *a, **kw):
            if os.fspath(path) == os.fspath(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(path, *a, **kw)

        monkeypatch.setattr(images.os, "open", deny)
    ffpp = tmp_path / "ffpp"
    _ffpp_with_bad_videos(demo_sources["ffpp"], ffpp)
    expected_videos = {"999.mp4": "corrupt_video", "998.mp4": "corrupt_video", "997.mp4": "no_face_detected"}
    return folder, ffpp, expected_bad, expected_dups, expected_videos, unusual


def _ffpp_with_bad_videos(src: Path, dst: Path) -> None:
    import shutil

    import cv2

    shutil.copytree(src, dst)
    videos = dst / "original_sequences" / "youtube" / "c23" / "videos"
    (videos / "999.mp4").write_bytes(b"")
    (videos / "998.mp4").write_bytes(os.urandom(4096))
    writer = cv2.VideoWriter(str(videos / "997.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 128))
    for i in range(6):
        writer.write(np.full((128, 128, 3), 90 + i, np.uint8))
    writer.release()


def test_bad_input_corpus(bad_corpus, tmp_path):
    folder, ffpp, expected_bad, expected_dups, expected_videos, unusual = bad_corpus
    cfg = collect_config([
        {"kind": "folder", "root": str(folder), "label": "real"},
        {"kind": "folder", "name": "later", "root": str(folder.parent / "later"), "label": "real"},
        {"kind": "ffpp", "root": str(ffpp), "methods": ["Deepfakes"], "frames_per_video": 2},
    ], max_image_pixels=50_000_000, allowed_formats=["JPEG", "PNG", "GIF", "WEBP"])
    _, kept, dropped = _run(cfg, tmp_path / "run")
    stats = _stats(tmp_path / "run")
    assert stats["in"] == stats["kept"] + stats["dropped"]
    assert stats["dropped"] == len(dropped) and stats["kept"] == len(kept)
    got = {Path(r.source_path).name: r.reason for r in dropped if r.source == "folder"}
    assert got == expected_bad
    assert {Path(r.source_path).name: r.reason for r in dropped if r.source == "later"} == expected_dups
    every_reason = set(expected_bad.values()) | set(expected_dups.values()) | set(expected_videos.values())
    assert len(every_reason) == 14  # each kind of bad input has its own reason (truncated JPEG and PNG share one)
    video_reasons = {}
    for r in dropped:
        if r.source == "ffpp":
            video_reasons.setdefault(Path(r.source_path).name, set()).add(r.reason)
    assert video_reasons == {name: {reason} for name, reason in expected_videos.items()}
    dup = next(r for r in dropped if r.reason == "duplicate_near")
    cat = next(r for r in kept if Path(r.source_path).name == "cat.png")
    assert dup.duplicate_of == cat.image_id and "cat.png" in dup.detail  # the kept row is named
    by_name = {Path(r.source_path).name: r for r in kept if r.source == "folder"}
    for name, expect in unusual.items():
        row = by_name[name]
        for key, value in expect.items():
            if key == "mode_prefix":
                assert row.mode.startswith(value), (name, row.mode)
            else:
                assert getattr(row, key) == value, (name, key, getattr(row, key))
    _assert_blobs_identical(kept, tmp_path / "run")
    assert sum(1 for r in kept if r.source == "folder") == len(unusual) + 1  # + cat.png; loopdir not double-counted


def test_workers_give_the_same_rows_as_in_process(demo_sources, tmp_path):
    sources = [{"kind": "genimage", "root": str(demo_sources["genimage"]), "quota_per_group": 3},
               {"kind": "chameleon", "root": str(demo_sources["chameleon"])}]
    _, one, _ = _run(collect_config(sources, workers=1), tmp_path / "one")
    _, two, _ = _run(collect_config(sources, workers=2), tmp_path / "two")
    assert [(r.source_path, r.image_id, r.phash) for r in one] == [(r.source_path, r.image_id, r.phash) for r in two]


# ---------------------------------------------------------------------------------------------- sampling


def test_quotas_ratio_and_seeded_sampling(demo_sources, tmp_path):
    def kept_paths(seed, run):
        cfg = collect_config([{"kind": "genimage", "root": str(demo_sources["genimage"]), "quota_per_group": 3,
                               "fake_real_ratio": 1.0, "quota": 10}], seed=seed)
        _, kept, dropped = _run(cfg, tmp_path / run)
        return kept, dropped

    kept, dropped = kept_paths(0, "a")
    assert len(kept) == 10
    assert sum(r.label == FAKE for r in kept) == sum(r.label == REAL for r in kept) == 5
    groups = {}
    for r in kept:
        groups[r.quota_group] = groups.get(r.quota_group, 0) + 1
    assert max(groups.values()) <= 3
    assert {r.reason for r in dropped} <= {"over_quota", "ratio_balance"} and dropped
    again, _ = kept_paths(0, "b")
    assert [r.source_path for r in again] == [r.source_path for r in kept]  # same seed, same rows
    other, _ = kept_paths(1, "c")
    assert {r.source_path for r in other} != {r.source_path for r in kept}  # another seed, another sample
