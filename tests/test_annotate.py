"""The annotate stage's bookkeeping: validation, retries with new seeds, the request cache, min_annotators.

A scripted backend (a test double registered for these tests only) answers by a rule, so every validation
reason and retry path is exercised exactly; tests/test_annotate_e2e.py runs the real transformers backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fakeclue_builder import annotate
from fakeclue_builder.backends import base
from fakeclue_builder.backends.base import Response
from fakeclue_builder.config import AnnotateConfig, ValidationConfig
from fakeclue_builder.records import FAKE, REAL, Row

GOOD = " The fur texture is unnaturally smooth; the left ear fuses into the background; shadows disagree."


class ScriptedBackend:
    """Answers from a per-model script: rule(request, call_index) -> Response. Counts every request it gets."""

    scripts: dict[str, callable] = {}
    calls: list = []

    def __init__(self, spec, key=None):
        self.spec, self.key = spec, key

    def generate(self, requests):
        out = []
        for request in requests:
            ScriptedBackend.calls.append((self.spec.model, request.image_id, request.sampling.seed))
            out.append(ScriptedBackend.scripts[self.spec.model](request))
        return out

    def close(self):
        pass


@pytest.fixture(autouse=True)
def scripted(monkeypatch):
    monkeypatch.setitem(base.REGISTRY, "transformers", f"{__name__}:ScriptedBackend")
    ScriptedBackend.calls = []
    ScriptedBackend.scripts = {}
    yield ScriptedBackend


def _rows(tmp_path: Path, n: int = 4) -> list[Row]:
    rows = []
    for i in range(n):
        rel = f"blobs/{i:02d}.png"
        (tmp_path / "blobs").mkdir(exist_ok=True)
        Image.new("RGB", (80, 60), (40 * i, 90, 120)).save(tmp_path / rel)
        rows.append(Row(source="s", source_path=f"/x/{i}.png", label=REAL if i % 2 else FAKE, image_id=f"{i:064x}",
                        blob=rel, cate="animal", prompt=f"Explain image {i}."))
    return rows


def _cfg(**kw) -> AnnotateConfig:
    annotators = kw.pop("annotators", {"a": {"model": "m-a"}, "b": {"model": "m-b"}})
    return AnnotateConfig(annotators=annotators, **kw)


def _prefixed(request) -> Response:
    return Response(request.response_prefix + GOOD, "stop", tokens=20)


def test_validation_reasons():
    v = ValidationConfig()
    assert annotate.validate("This is a fake image." + GOOD, "stop", FAKE, v) is None
    assert annotate.validate("", "stop", FAKE, v) == "empty"
    assert annotate.validate("The fur looks odd." + GOOD, "stop", FAKE, v) == "no_verdict"
    assert annotate.validate("This is a real image." + GOOD, "stop", FAKE, v) == "verdict_mismatch"
    assert annotate.validate("This is a fake image." + GOOD, "length", FAKE, v) == "truncated"
    assert annotate.validate("This is a fake image. Odd fur.", "stop", FAKE, v) == "too_short"
    assert annotate.validate("This is a fake image. " + "the fur is odd " * 10, "stop", FAKE, v) == "repetition"
    assert annotate.validate("This is a fake image. " + "Мех выглядит неестественно гладким у этой кошки" * 2,
                             "stop", FAKE, v) == "not_english"


def test_all_good_rows_carry_every_annotation(scripted, tmp_path):
    scripted.scripts = {"m-a": _prefixed, "m-b": _prefixed}
    stage = annotate.AnnotateStage(_cfg(), tmp_path)
    rows = list(stage(_rows(tmp_path)))
    assert all(r.kept and [a["annotator"] for a in r.annotations] == ["a", "b"] for r in rows)
    for row in rows:
        expected = "This is a real image." if row.label == REAL else "This is a fake image."
        assert all(a["ok"] and a["text"].startswith(expected) and a["attempts"] == 1 for a in row.annotations)
    assert len(scripted.calls) == 8
    stats = stage.shard_stats()
    assert stats["a"]["answers_ok"] == 4 and stats["a"]["backend_requests"] == 4 and stats["a"]["generated_tokens"] == 80


def test_retries_use_new_seeds_then_record_the_reason(scripted, tmp_path):
    seen_seeds = []

    def flaky(request):  # fails validation on the first attempt only
        seen_seeds.append(request.sampling.seed)
        good = sum(1 for m, i, _ in scripted.calls if m == "m-a" and i == request.image_id) > 1
        return _prefixed(request) if good else Response(request.response_prefix, "length", tokens=5)

    scripted.scripts = {"m-a": flaky, "m-b": lambda r: Response("", "stop")}
    cfg = _cfg(min_annotators=1, retries=2)
    rows = list(annotate.AnnotateStage(cfg, tmp_path)(_rows(tmp_path, 2)))
    a = [r.annotations[0] for r in rows]
    b = [r.annotations[1] for r in rows]
    assert all(x["ok"] and x["attempts"] == 2 for x in a)
    assert len(set(seen_seeds)) == 2  # a retry asks with a new seed
    assert all(not x["ok"] and x["reason"] == "empty" and x["attempts"] == 3 for x in b)
    assert all(r.kept for r in rows)  # min_annotators=1: a alone carries them


def test_rows_without_enough_good_answers_are_dropped_with_reasons(scripted, tmp_path):
    scripted.scripts = {"m-a": _prefixed, "m-b": lambda r: Response("This is a real image." + GOOD, "stop")}
    rows = list(annotate.AnnotateStage(_cfg(retries=0), tmp_path)(_rows(tmp_path)))
    fakes = [r for r in rows if r.label == FAKE]
    reals = [r for r in rows if r.label == REAL]
    assert all(r.kept for r in reals)
    assert all(r.reason == "annotators_failed" and "b: verdict_mismatch" in r.detail for r in fakes)


def test_cache_means_a_rerun_asks_nothing(scripted, tmp_path):
    scripted.scripts = {"m-a": _prefixed, "m-b": _prefixed}
    stage = annotate.AnnotateStage(_cfg(), tmp_path)
    first = list(stage(_rows(tmp_path)))
    stage.close()
    n_calls = len(scripted.calls)
    again = annotate.AnnotateStage(_cfg(), tmp_path)
    second = list(again(_rows(tmp_path)))
    assert len(scripted.calls) == n_calls  # every answer came from the cache
    assert all(a["cached"] for r in second for a in r.annotations)
    assert [a["text"] for r in first for a in r.annotations] == [a["text"] for r in second for a in r.annotations]
    assert again.shard_stats()["a"]["cache_hits"] == 4
    changed = _cfg(annotators={"a": {"model": "m-a", "sampling": {"temperature": 0.7}}, "b": {"model": "m-b"}})
    list(annotate.AnnotateStage(changed, tmp_path)(_rows(tmp_path)))
    assert len(scripted.calls) == n_calls + 4  # new sampling = new requests, for that annotator only


def test_backend_errors_and_bad_images(scripted, tmp_path):
    scripted.scripts = {"m-a": _prefixed, "m-b": lambda r: Response("", "error", error="HTTP 500")}
    rows = _rows(tmp_path, 2)
    (tmp_path / rows[0].blob).write_bytes(b"not a png")
    out = list(annotate.AnnotateStage(_cfg(min_annotators=1, retries=0), tmp_path)(rows))
    assert out[0].reason == "decode_failed"
    assert out[1].kept and out[1].annotations[1]["reason"] == "backend_error"


def test_only_one_model_fills_the_cache_without_judging(scripted, tmp_path):
    scripted.scripts = {"m-a": lambda r: Response("", "stop"), "m-b": _prefixed}
    rows = list(annotate.AnnotateStage(_cfg(), tmp_path, only=["a"])(_rows(tmp_path)))
    assert all(r.kept and [a["annotator"] for a in r.annotations] == ["a"] for r in rows)
    with pytest.raises(Exception, match="not in annotate.annotators"):
        annotate.AnnotateStage(_cfg(), tmp_path, only=["zzz"])


def test_pixel_budget():
    from fakeclue_builder.config import AnnotatorSpec

    img = Image.new("RGB", (1000, 500))
    assert annotate.fit_pixels(img, AnnotatorSpec(model="m", max_pixels=125_000)).size == (500, 250)
    assert annotate.fit_pixels(img, AnnotatorSpec(model="m")).size == (1000, 500)
    assert annotate.fit_pixels(Image.new("RGB", (10, 10)), AnnotatorSpec(model="m", min_pixels=400)).size == (20, 20)


def _cache_worker(args):
    path, worker = args
    from fakeclue_builder.backends.base import Response
    from fakeclue_builder.request_cache import RequestCache

    cache = RequestCache(path)  # every worker opens (and switches to WAL) at the same moment
    for batch in range(20):
        cache.put_many({f"{worker}-{batch}-{k}": Response(text="x" * 100) for k in range(10)})
    found = cache.get_many([f"{worker}-{batch}-{k}" for batch in range(20) for k in range(10)])
    cache.close()
    return len(found)


def test_request_cache_shared_by_concurrent_processes(tmp_path):
    """Ray actors and Slurm tasks share one cache file: concurrent opens and writes must all succeed."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        found = pool.map(_cache_worker, [(tmp_path / "cache.sqlite", w) for w in range(4)])
    assert found == [200] * 4
