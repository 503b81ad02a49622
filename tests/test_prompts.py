"""Prompts stage: the template set, the registry, rendering, hashing, overrides and per-row failures."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fakeclue_builder import prompts
from fakeclue_builder.config import ConfigError, PromptsConfig
from fakeclue_builder.prompts import DEFAULT_DIR, REGISTRY, PromptLibrary, template_for
from fakeclue_builder.records import CATEGORIES, FAKE, REAL, STATUS_DROPPED, Row

ANNOTATION_TEMPLATES = sorted(p for p in DEFAULT_DIR.glob("*.j2") if p.name != "aggregate.j2")
COMBOS = [(c, label, flag) for c in CATEGORIES for label in (REAL, FAKE) for flag in (False, True)]
NO_ARTIFACT = "no obvious visual artifact"


def row(cate: str | None = "animal", label: int = FAKE, **kw) -> Row:
    return Row(source="test", source_path=f"{cate}/{label}/{kw.get('generator')}.png", label=label, cate=cate, **kw)


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary()


@pytest.fixture
def prompt_dir(tmp_path) -> Path:
    dst = tmp_path / "my_prompts"
    shutil.copytree(DEFAULT_DIR, dst)
    return dst


# ---------------------------------------------------------------------------------------------- the set


def test_exactly_twelve_distinct_annotation_templates_plus_aggregate():
    assert len(ANNOTATION_TEMPLATES) == 12
    assert len({p.read_text() for p in ANNOTATION_TEMPLATES}) == 12
    assert (DEFAULT_DIR / "aggregate.j2").is_file()
    assert sorted(p.stem for p in ANNOTATION_TEMPLATES) == sorted(set(REGISTRY.values()))
    assert sum(p.name.startswith("fake_") for p in ANNOTATION_TEMPLATES) == 7
    assert (DEFAULT_DIR / "README.md").is_file()


def test_registry_covers_every_category_and_label():
    assert set(REGISTRY) == {(c, label) for c in CATEGORIES for label in (REAL, FAKE)}
    assert len(REGISTRY) == 14
    assert {REGISTRY[(c, FAKE)] for c in CATEGORIES} == {f"fake_{c}" for c in CATEGORIES}
    assert REGISTRY[("human", REAL)] == REGISTRY[("animal", REAL)]
    assert REGISTRY[("object", REAL)] == REGISTRY[("scene", REAL)]


def test_template_for_ids():
    assert template_for("animal", FAKE) == ("fake_animal", "fake_animal.j2")
    assert template_for("scene", FAKE, True) == ("fake_scene+no_forced_artifacts", "fake_scene.j2")
    assert template_for("scene", REAL, True) == ("real_scene_object", "real_scene_object.j2")  # flag: fakes only
    assert template_for("deepfake", REAL) == ("real_face", "real_face.j2")
    assert prompts.QUESTION == "Does the image looks real/fake?"


# ---------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("cate,label,flag", COMBOS)
def test_every_combination_renders_with_prior_and_format(library, cate, label, flag):
    text = library.render_for(cate, label, no_forced_artifacts=flag)
    name = "real" if label == REAL else "fake"
    assert f"This image is known to be {name}" in text
    assert f'starts exactly with "This is a {name} image."' in text
    other = "fake" if label == REAL else "real"
    assert f"This is a {other} image." not in text
    assert "{{" not in text and "{%" not in text and "{#" not in text
    assert "\n\n\n" not in text and text == text.strip()
    assert "Example 1:" not in text  # no few-shot block by default
    assert "chameleon" not in text.lower()


@pytest.mark.parametrize("cate,words", [
    ("doc", ("text", "font")), ("satellite", ("road", "building")), ("deepfake", ("blending", "boundary")),
    ("animal", ("fur", "paw")), ("human", ("fingers", "teeth")), ("scene", ("shadows", "perspective")),
    ("object", ("shape", "logos")),
])
def test_fake_templates_name_category_focus(library, cate, words):
    text = library.render_for(cate, FAKE).lower()
    for word in words:
        assert word in text, (cate, word)


def test_real_templates_explain_authenticity(library):
    assert "teeth" in library.render_for("human", REAL) and "paws" not in library.render_for("human", REAL)
    assert "paws" in library.render_for("animal", REAL)
    assert "compression" in library.render_for("deepfake", REAL)
    for cate in CATEGORIES:
        assert "authentic" in library.render_for(cate, REAL)


@pytest.mark.parametrize("cate", CATEGORIES)
def test_no_forced_artifacts_variant(library, cate):
    plain = library.render_for(cate, FAKE)
    flagged = library.render_for(cate, FAKE, no_forced_artifacts=True)
    assert plain != flagged
    assert NO_ARTIFACT in flagged and NO_ARTIFACT not in plain
    assert "rather than inventing" in flagged
    assert library.render_for(cate, REAL, no_forced_artifacts=True) == library.render_for(cate, REAL)


def test_few_shot_block_only_when_given(library, tmp_path):
    examples = ["This is a fake image. The dog has five legs; the fur is waxy.", "This is a fake image. X; Y."]
    text = library.render_for("animal", FAKE, few_shot=examples)
    assert "Example 1: " + examples[0] in text and "Example 2: " + examples[1] in text
    assert "Examples of answers" not in library.render_for("animal", FAKE, few_shot=[])

    configured = PromptLibrary(few_shot={"fake_animal": examples[:1], "real_living": examples[1:]})
    assert examples[0] in configured.render_for("animal", FAKE)
    assert examples[0] in configured.render_for("animal", FAKE, no_forced_artifacts=True)  # base id fallback
    assert examples[1] in configured.render_for("human", REAL)
    assert "Examples of answers" not in configured.render_for("scene", FAKE)
    with pytest.raises(ConfigError, match="fake_animals"):
        PromptLibrary(few_shot={"fake_animals": ["typo"]})


def test_deepfake_hint_by_method_never_names_it(library):
    reenact = library.render_for("deepfake", FAKE, generator="NeuralTextures")
    swap = library.render_for("deepfake", FAKE, generator="Deepfakes")
    plain = library.render_for("deepfake", FAKE, generator=None)
    assert "mouth, lips, teeth" in reenact and "inner face was replaced" in swap and "Hint:" not in plain
    assert "NeuralTextures" not in reenact


def test_aggregate_template(library):
    answers = [{"model": "qwen2-vl", "text": "This is a fake image. The paw has six toes."},
               {"model": "internvl", "text": "This is a fake image. Six toes on the left paw."}]
    text = library.render_aggregate(label=FAKE, cate="animal", answers=answers, consensus="- six toes")
    assert 'starts exactly with "This is a fake image."' in text
    assert "The paw has six toes." in text and "(internvl)" in text and "- six toes" in text
    assert "at least two answers" in text and "critical" in text and "aspect" in text
    no_consensus = library.render_aggregate(label=REAL, cate="scene", answers=answers)
    assert "This is a real image." in no_consensus and "semantic matching" not in no_consensus
    with pytest.raises(prompts.PromptRowError):
        library.render_aggregate(label=FAKE, cate="animal")  # answers missing: StrictUndefined


# ---------------------------------------------------------------------------------------------- hashing


def test_hashes_stable_and_sensitive_to_edits(library, prompt_dir):
    again = PromptLibrary()
    assert library.library_hash() == again.library_hash()
    r1, r2 = row("satellite", FAKE), row("satellite", FAKE)
    pid, text, sha = library.render(r1)
    assert (pid, text, sha) == again.render(r2)
    assert sha == hashlib.sha256(text.encode()).hexdigest()

    copy = PromptLibrary(prompt_dir)
    assert copy.library_hash() == library.library_hash()
    path = prompt_dir / "fake_satellite.j2"
    path.write_text(path.read_text().replace("top-down view", "bird's-eye view"))
    edited = PromptLibrary(prompt_dir)
    assert edited.library_hash() != library.library_hash()
    assert edited.render(row("satellite", FAKE))[2] != sha
    assert edited.render(row("doc", FAKE))[2] == library.render(row("doc", FAKE))[2]  # only that template changed
    cfg_default, cfg_edited = PromptsConfig(), PromptsConfig(dir=prompt_dir)
    assert prompts.config_hash(cfg_default) != prompts.config_hash(cfg_edited)
    assert prompts.config_hash(cfg_default) == prompts.config_hash(PromptsConfig())


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_template_is_config_error(prompt_dir):
    (prompt_dir / "real_doc.j2").unlink()
    with pytest.raises(ConfigError, match=r"prompts\.dir.*real_doc\.j2"):
        PromptLibrary(prompt_dir)
    (prompt_dir / "aggregate.j2").unlink()
    with pytest.raises(ConfigError, match="aggregate.j2"):
        list(prompts.run(PromptsConfig(dir=prompt_dir), [row()]))


def test_missing_dir_and_syntax_error_are_config_errors(tmp_path, prompt_dir):
    with pytest.raises(ConfigError, match=r"prompts\.dir .* is not a directory"):
        PromptLibrary(tmp_path / "nope")
    (prompt_dir / "fake_human.j2").write_text("This is {% if %} broken")
    with pytest.raises(ConfigError, match=r"fake_human\.j2 line 1"):
        PromptLibrary(prompt_dir)


def test_undefined_variable_drops_row_with_render_error(prompt_dir):
    path = prompt_dir / "fake_object.j2"
    path.write_text(path.read_text() + "\n{{ image_caption }}\n")  # not a variable the stage provides
    rows = [row("object", FAKE), row("object", REAL), row("object", FAKE, no_forced_artifacts=True)]
    out = list(prompts.run(PromptsConfig(dir=prompt_dir), rows))
    assert [r.status for r in out] == [STATUS_DROPPED, "ok", STATUS_DROPPED]
    assert out[0].reason == "prompt_render_error" and "image_caption" in out[0].detail
    assert "fake_object.j2" in out[0].detail and out[0].prompt is None
    assert out[1].prompt_id == "real_scene_object" and out[1].prompt


def test_empty_render_is_a_render_error(prompt_dir):
    (prompt_dir / "fake_doc.j2").write_text("{% if no_forced_artifacts %}only for flagged{% endif %}\n")
    out = list(prompts.run(PromptsConfig(dir=prompt_dir), [row("doc", FAKE), row("doc", FAKE, no_forced_artifacts=True)]))
    assert out[0].reason == "prompt_render_error" and "empty" in out[0].detail
    assert out[1].kept and out[1].prompt == "only for flagged"


@pytest.mark.parametrize("cate", [None, "landscape", "Animal", ""])
def test_unknown_category_dropped(cate):
    (out,) = prompts.run(PromptsConfig(), [row(cate, FAKE)])
    assert out.status == STATUS_DROPPED and out.reason == "unknown_category"
    assert repr(cate) in out.detail and out.prompt_id is None


def test_show_for_the_cli():
    text = prompts.show("animal", "fake")
    assert text.startswith("You are") and "known to be fake" in text and "paws" in text
    assert prompts.show("animal", 0) == text
    assert NO_ARTIFACT in prompts.show("scene", "fake", no_forced_artifacts=True)
    with pytest.raises(ConfigError, match="plant"):
        prompts.show("plant", "fake")
    with pytest.raises(ConfigError, match="maybe"):
        prompts.show("animal", "maybe")


# ---------------------------------------------------------------------------------------------- the stage


def test_run_over_mixed_rows_keeps_invariant():
    already = row("animal", FAKE).drop("duplicate_exact", "same bytes")
    rows = [
        row("animal", FAKE), row("human", REAL), row("scene", FAKE, no_forced_artifacts=True, generator="chameleon"),
        row("deepfake", FAKE, generator="Face2Face"), row("satellite", REAL), row("doc", FAKE),
        row(None, FAKE), row("plant", REAL), already, row("animal", 2),
    ]
    out = list(prompts.run(PromptsConfig(few_shot={"fake_doc": ["This is a fake image. Garbled headline."]}), rows))
    kept = [r for r in out if r.kept]
    dropped = [r for r in out if not r.kept]
    assert len(out) == len(rows) == len(kept) + len(dropped)
    assert [r.prompt_id for r in kept] == ["fake_animal", "real_living", "fake_scene+no_forced_artifacts",
                                          "fake_deepfake", "real_satellite", "fake_doc"]
    for r in kept:
        assert r.prompt_sha256 == hashlib.sha256(r.prompt.encode()).hexdigest()
        assert f"This is a {'real' if r.label == REAL else 'fake'} image." in r.prompt
    assert "Garbled headline." in kept[-1].prompt
    assert [r.reason for r in dropped] == ["unknown_category", "unknown_category", "duplicate_exact", "unknown_label"]
    assert already.detail == "same bytes" and already.prompt is None  # passed through untouched
