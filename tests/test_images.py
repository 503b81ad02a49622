"""images.py: every bad input gets its own reason, unusual-but-valid images are accepted as they are,
hashes are stable, and the blob store is content-addressed, atomic and really hardlinks."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
import threading
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin
from skimage import data as skdata

from fakeclue_builder import images
from fakeclue_builder.images import BlobStore, ImageRejected, probe_image, read_file

ALLOWED = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
BIG = 10**8


# ---------------------------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def probe(data: bytes, **kw) -> images.ImageProbe:
    return probe_image(data, max_pixels=kw.pop("max_pixels", BIG), allowed_formats=kw.pop("allowed", ALLOWED))


def reject_reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        probe(data, **kw)
    assert info.value.reason in images.REASONS
    return info.value.reason


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(skdata.coffee())


# ---------------------------------------------------------------------------------------------- read_file


def test_read_file_returns_exact_bytes_and_follows_good_symlinks(tmp_path, astronaut):
    payload = encode(astronaut, "JPEG", quality=90)
    (tmp_path / "a.jpg").write_bytes(payload)
    os.symlink("a.jpg", tmp_path / "link.jpg")
    assert read_file(tmp_path / "a.jpg") == payload
    assert read_file(tmp_path / "link.jpg") == payload


def _file_reason(path: Path) -> str:
    with pytest.raises(ImageRejected) as info:
        read_file(path)
    return info.value.reason


def test_file_level_bad_inputs_each_get_their_own_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    os.symlink("does-not-exist.jpg", tmp_path / "broken.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")  # a link to itself: ELOOP
    (tmp_path / "dir.jpg").mkdir()
    got = {
        name: _file_reason(tmp_path / name)
        for name in ["empty.jpg", "broken.jpg", "loop.jpg", "dir.jpg", "missing.jpg"]
    }
    assert got == {
        "empty.jpg": "empty_file",
        "broken.jpg": "broken_symlink",
        "loop.jpg": "symlink_loop",
        "dir.jpg": "not_a_file",
        "missing.jpg": "missing_file",
    }


@pytest.mark.timeout(20)
def test_fifo_is_rejected_without_being_opened(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    opened = []
    real_open = os.open
    monkeypatch.setattr(images.os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    assert _file_reason(fifo) == "not_a_file"  # opening a FIFO with no writer would block forever
    assert opened == []


def test_unreadable_file_via_patched_open(tmp_path, monkeypatch):
    # Tests run as root here, and chmod 000 does not stop root from reading, so the permission failure is
    # simulated at the lowest level read_file uses (os.open); the chmod-based test below covers non-root.
    target = tmp_path / "secret.jpg"
    target.write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    real_open = os.open

    def deny(path, *args, **kwargs):
        if Path(path) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images.os, "open", deny)
    with pytest.raises(ImageRejected) as info:
        read_file(target)
    assert info.value.reason == "unreadable_file"
    assert "Permission denied" in info.value.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_via_chmod(tmp_path):
    target = tmp_path / "secret.jpg"
    target.write_bytes(b"data")
    target.chmod(0)
    try:
        assert _file_reason(target) == "unreadable_file"
    finally:
        target.chmod(0o644)


def test_undecodable_filename_shows_up_as_valid_utf8_detail(tmp_path):
    name = os.fsdecode(b"bad-\xff.jpg")
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ImageRejected) as info:
        read_file(tmp_path / name)
    assert info.value.reason == "empty_file"
    info.value.detail.encode("utf-8")  # would raise on a lone surrogate; Parquet needs valid UTF-8
    assert "\\xff" in info.value.detail


# ---------------------------------------------------------------------------------------------- probe: bad


def test_truncated_jpeg_is_caught_on_the_draft_path(astronaut, monkeypatch):
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(
        JpegImagePlugin.JpegImageFile, "draft", lambda self, *a: drafts.append(a) or real_draft(self, *a)
    )
    for progressive in (False, True):
        payload = encode(astronaut, "JPEG", quality=92, progressive=progressive)
        assert probe(payload).format == "JPEG"
        assert reject_reason(payload[: int(len(payload) * 0.6)]) == "truncated_image"
        assert reject_reason(payload[: int(len(payload) * 0.98)]) == "truncated_image"
    assert len(drafts) == 6  # the reduced-size decode really was the one that caught it


def test_truncated_png(astronaut):
    payload = encode(astronaut, "PNG")
    assert probe(payload).format == "PNG"
    assert reject_reason(payload[: int(len(payload) * 0.6)]) == "truncated_image"


def test_corrupt_png_pixel_data(astronaut):
    payload = bytearray(encode(astronaut, "PNG"))
    mid = len(payload) // 2
    payload[mid : mid + 200] = bytes(200)
    assert reject_reason(bytes(payload)) == "corrupt_image"


def test_text_named_jpg_is_not_an_image_but_broken_jpeg_header_is_corrupt():
    assert reject_reason(b"hello, this is a text file\n" * 10) == "not_an_image"
    assert reject_reason(b"\xff\xd8\xff\xe0" + b"\x00" * 20) == "corrupt_image"


@pytest.mark.parametrize("fmt", ["PPM", "ICO"])
def test_readable_but_unsupported_format(astronaut, fmt):
    with pytest.raises(ImageRejected) as info:
        probe(encode(astronaut, fmt))
    assert info.value.reason == "unsupported_format"
    assert fmt in info.value.detail and "collect.allowed_formats" in info.value.detail
    assert probe(encode(astronaut, fmt), allowed=ALLOWED | {fmt}).format == fmt


def test_mpo_counts_as_jpeg(astronaut, chelsea):
    payload = encode(astronaut, "MPO", save_all=True, append_images=[chelsea])
    got = probe(payload, allowed={"JPEG"})
    assert (got.format, got.n_frames, images.FORMAT_EXT[got.format]) == ("MPO", 2, "jpg")
    assert reject_reason(payload[: int(len(payload) * 0.8)], allowed={"JPEG"}) == "truncated_image"


def test_decompression_bomb_header_is_rejected_before_any_decode(monkeypatch):
    side = 100_000  # 10^10 pixels declared by a ~60-byte file
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    bomb += png_chunk(b"IEND", b"")

    def no_decode(self, *a, **k):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageRejected) as info:
        probe(bomb, max_pixels=89_478_485)
    assert info.value.reason == "decompression_bomb"
    assert "100000x100000" in info.value.detail


def test_our_pixel_limit_not_pils(astronaut, monkeypatch):
    payload = encode(astronaut, "PNG")  # 512x512
    assert reject_reason(payload, max_pixels=512 * 512 - 1) == "decompression_bomb"
    assert probe(payload, max_pixels=512 * 512).width == 512
    # PIL's own global limit far below ours must not interfere, and must be restored afterwards
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert probe(payload, max_pixels=10**6).height == 512
    assert reject_reason(payload[: len(payload) // 2]) == "truncated_image"  # even if someone allowed it
    assert Image.MAX_IMAGE_PIXELS == 1000 and ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_unknown_reason_code_is_a_programming_error():
    with pytest.raises(ValueError):
        ImageRejected("made_up_reason")
    required = """empty_file truncated_image not_an_image corrupt_image unsupported_format decompression_bomb
    corrupt_video no_face_detected unreadable_file broken_symlink symlink_loop not_a_file undecodable_filename
    duplicate_exact duplicate_near over_quota ratio_balance unsafe_zip_member missing_file""".split()
    assert set(required) <= set(images.REASONS)
    assert all(isinstance(v, str) and v and "\n" not in v for v in images.REASONS.values())


# ---------------------------------------------------------------------------------------------- probe: unusual


def test_unusual_valid_images_keep_their_properties(astronaut, chelsea, coffee):
    grey16 = (np.asarray(astronaut.convert("L")).astype(np.uint16) * 257) + np.uint16(3)
    cases = {
        "cmyk": (encode(astronaut.convert("CMYK"), "JPEG", quality=90), "JPEG", "CMYK", 1),
        "i16": (encode(Image.fromarray(grey16), "PNG"), "PNG", "I;16", 1),
        "palette": (encode(astronaut.convert("P"), "PNG"), "PNG", "P", 1),
        "la": (encode(astronaut.convert("LA"), "PNG"), "PNG", "LA", 1),
        "rgba": (encode(astronaut.convert("RGBA"), "PNG"), "PNG", "RGBA", 1),
        "gif": (
            encode(astronaut.convert("P"), "GIF", save_all=True, append_images=[im.resize((512, 512)).convert("P") for im in (chelsea, coffee)]),
            "GIF", "P", 3,
        ),
        "webp": (encode(astronaut, "WEBP", save_all=True, append_images=[chelsea.resize((512, 512))]), "WEBP", "RGB", 2),
    }  # fmt: skip
    reference = imagehash.hex_to_hash(probe(encode(astronaut, "PNG")).phash)
    for name, (payload, fmt, mode, n_frames) in cases.items():
        got = probe(payload)
        assert (got.format, got.mode, got.n_frames, got.width, got.height) == (fmt, mode, n_frames, 512, 512), name
        assert imagehash.hex_to_hash(got.phash) - reference <= 6, name  # same photo, whatever the mode


def test_truncated_later_frame_of_animation_is_caught(astronaut, chelsea, coffee):
    frames = [im.resize((256, 256)).convert("P") for im in (chelsea, coffee)]
    payload = encode(astronaut.resize((256, 256)).convert("P"), "GIF", save_all=True, append_images=frames)
    assert probe(payload).n_frames == 3
    with pytest.raises(ImageRejected) as info:
        probe(payload[: int(len(payload) * 0.85)])
    assert info.value.reason == "truncated_image"


def test_exif_rotated_jpeg_is_recorded_not_rotated(coffee):
    exif = Image.Exif()
    exif[274] = 6
    payload = encode(coffee, "JPEG", quality=90, exif=exif)  # stored 600x400
    before = hashlib.sha256(payload).hexdigest()
    got = probe(payload)
    assert (got.exif_orientation, got.width, got.height) == (6, 600, 400)
    assert hashlib.sha256(payload).hexdigest() == before
    assert probe(encode(coffee, "JPEG")).exif_orientation is None


def test_probe_never_modifies_the_bytes(astronaut):
    payload = bytearray(encode(astronaut, "JPEG"))
    snapshot = bytes(payload)
    probe(bytes(payload))
    probe_image(payload, max_pixels=BIG, allowed_formats=ALLOWED)  # even a mutable buffer is left alone
    assert payload == snapshot


# ---------------------------------------------------------------------------------------------- hashes


def test_sha256_hex_matches_hashlib():
    blob = os.urandom(10_000)
    assert images.sha256_hex(blob) == hashlib.sha256(blob).hexdigest()


def test_phash_is_stable_across_encodings_and_sizes_and_separates_photos(astronaut, chelsea, coffee):
    def ph(img, fmt, **kw):
        return imagehash.hex_to_hash(probe(encode(img, fmt, **kw)).phash)

    a_jpeg, a_png = ph(astronaut, "JPEG", quality=95), ph(astronaut, "PNG")
    assert len(str(a_jpeg)) == 16 and all(c in "0123456789abcdef" for c in str(a_jpeg))
    assert a_jpeg - a_png <= 4
    assert ph(astronaut.resize((1024, 1024)), "JPEG", quality=95) - a_png <= 4
    assert str(a_jpeg) == str(ph(astronaut, "JPEG", quality=95))  # deterministic
    assert images.phash_hex(astronaut) == images.phash_hex(astronaut.copy())
    others = [ph(chelsea, "PNG"), ph(coffee, "PNG")]
    assert all(a_png - other > 10 for other in others)
    assert others[0] - others[1] > 10


def test_phash_of_wide_modes_uses_the_full_range():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (256, 1))
    as16 = images.phash_hex(Image.fromarray(ramp))
    as8 = images.phash_hex(Image.fromarray((ramp // 257).astype(np.uint8)))
    assert imagehash.hex_to_hash(as16) - imagehash.hex_to_hash(as8) <= 2


def test_encode_png_is_lossless(chelsea):
    payload = images.encode_png(chelsea)
    back = Image.open(io.BytesIO(payload))
    assert back.format == "PNG"
    assert np.array_equal(np.asarray(back), np.asarray(chelsea))


# ---------------------------------------------------------------------------------------------- blob store


def _stored(tmp_path: Path, image, fmt="JPEG") -> tuple[Path, bytes, str]:
    payload = encode(image, fmt)
    src = tmp_path / "src" / f"photo.{fmt.lower()}"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(payload)
    return src, payload, hashlib.sha256(payload).hexdigest()


def _leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_blobstore_hardlinks_when_it_can(tmp_path, astronaut):
    src, payload, digest = _stored(tmp_path, astronaut)
    store = BlobStore(tmp_path / "run", mode="hardlink")
    rel = store.put(digest, "jpg", payload, src=src)
    assert rel == f"blobs/{digest[:2]}/{digest}.jpg"
    assert store.path(rel) == tmp_path / "run" / rel
    assert store.path(rel).read_bytes() == payload
    assert os.stat(store.path(rel)).st_ino == os.stat(src).st_ino
    assert _leftovers(tmp_path / "run") == []


def test_blobstore_hardlink_resolves_symlinked_source(tmp_path, astronaut):
    src, payload, digest = _stored(tmp_path, astronaut)
    os.symlink(src, tmp_path / "alias.jpg")
    store = BlobStore(tmp_path / "run")
    rel = store.put(digest, "jpg", payload, src=tmp_path / "alias.jpg")
    assert os.stat(store.path(rel)).st_ino == os.stat(src).st_ino
    assert not store.path(rel).is_symlink()


def test_blobstore_copy_mode_copies(tmp_path, chelsea):
    src, payload, digest = _stored(tmp_path, chelsea, "PNG")
    store = BlobStore(tmp_path / "run", mode="copy")
    rel = store.put(digest, "png", payload, src=src)
    assert store.path(rel).read_bytes() == payload
    assert os.stat(store.path(rel)).st_ino != os.stat(src).st_ino
    assert _leftovers(tmp_path / "run") == []


def test_blobstore_falls_back_to_copy_when_linking_fails(tmp_path, coffee, monkeypatch):
    src, payload, digest = _stored(tmp_path, coffee)

    def cross_device(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(images.os, "link", cross_device)
    store = BlobStore(tmp_path / "run")
    rel = store.put(digest, "jpg", payload, src=src)
    assert store.path(rel).read_bytes() == payload
    assert os.stat(store.path(rel)).st_ino != os.stat(src).st_ino
    assert _leftovers(tmp_path / "run") == []


def test_blobstore_refuses_a_source_that_changed_since_it_was_read(tmp_path, coffee):
    src, payload, digest = _stored(tmp_path, coffee)
    src.write_bytes(payload + b"appended later")
    rel = BlobStore(tmp_path / "run").put(digest, "jpg", payload, src=src)
    assert (tmp_path / "run" / rel).read_bytes() == payload


def test_blobstore_put_is_idempotent(tmp_path, astronaut):
    src, payload, digest = _stored(tmp_path, astronaut)
    store = BlobStore(tmp_path / "run", mode="copy")
    rel = store.put(digest, "jpg", payload)
    first = os.stat(store.path(rel))
    assert store.put(digest, "jpg", b"different bytes would never be written") == rel
    again = os.stat(store.path(rel))
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert store.path(rel).read_bytes() == payload


def test_blobstore_concurrent_puts_of_the_same_blob(tmp_path, chelsea):
    src, payload, digest = _stored(tmp_path, chelsea)
    store = BlobStore(tmp_path / "run", mode="copy")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.put(digest, "jpg", payload))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert store.path(results[0]).read_bytes() == payload
    assert _leftovers(tmp_path / "run") == []
    assert [p.name for p in (tmp_path / "run" / "blobs" / digest[:2]).iterdir()] == [f"{digest}.jpg"]


def test_blobstore_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        BlobStore(tmp_path, mode="symlink")
    with pytest.raises(ValueError):
        BlobStore(tmp_path).put("../../etc", "jpg", b"x")
    with pytest.raises(ValueError):
        BlobStore(tmp_path).put("ab" * 32, "jpg/../x", b"x")


# ---------------------------------------------------------------------------------------------- contract


def test_load_context_ingest_uses_this_module(tmp_path, coffee):
    from fakeclue_builder.records import Row
    from fakeclue_builder.sources.base import LoadContext

    src, payload, digest = _stored(tmp_path, coffee)
    ctx = LoadContext(blobs=BlobStore(tmp_path / "run"), max_pixels=BIG, allowed_formats=ALLOWED)
    row = ctx.ingest(Row(source="t", source_path=str(src), label=1), read_file(src), src=src)
    assert row.kept and row.image_id == digest and row.blob == f"blobs/{digest[:2]}/{digest}.jpg"
    assert (row.format, row.width, row.height, row.mode, row.n_frames) == ("JPEG", 600, 400, "RGB", 1)
    bad = ctx.ingest(Row(source="t", source_path="x.jpg", label=1), payload[: len(payload) // 2])
    assert (bad.status, bad.reason, bad.blob) == ("dropped", "truncated_image", None)
