"""The upstream manifests in manifests/ load, validate and state the facts the pipeline relies on."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fakeclue_builder import manifests as m

EXPECTED = {"genimage", "ffpp", "chameleon", "cvusa", "vigor", "m6doc", "loki", "ddvqa", "fakeclue"}
KINDS = {"genimage", "ffpp", "chameleon", "folder", "fakeclue", "benchmark", "synthesize"}
REPO_MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.delenv(m.ENV_VAR, raising=False)
    m.clear_cache()
    yield
    m.clear_cache()


def test_all_expected_manifests_exist():
    assert set(m.list_manifests()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_manifest_loads_and_validates(name):
    man = m.load_manifest(name)
    assert man.kind in KINDS
    assert all(v in (0, 1) and not isinstance(v, bool) for v in man.label_map.values())
    assert man.citation.startswith("@") and "{" in man.citation
    assert man.layout and all(e.pattern and e.meaning for e in man.layout)
    assert m.load_manifest(name) is man  # cached


def test_kinds_and_fixed_categories():
    kinds = {n: m.load_manifest(n).kind for n in EXPECTED}
    assert kinds == {
        "genimage": "genimage", "ffpp": "ffpp", "chameleon": "chameleon", "fakeclue": "fakeclue",
        "loki": "benchmark", "ddvqa": "benchmark", "cvusa": "synthesize", "vigor": "synthesize", "m6doc": "synthesize",
    }
    cates = {n: m.load_manifest(n).cate for n in ("ffpp", "cvusa", "vigor", "m6doc", "genimage", "chameleon")}
    assert cates == {"ffpp": "deepfake", "cvusa": "satellite", "vigor": "satellite", "m6doc": "doc",
                     "genimage": None, "chameleon": None}


def test_label_maps():
    assert m.load_manifest("genimage").label_map == {"ai": 0, "nature": 1}
    assert m.load_manifest("chameleon").label_map == {"0_real": 1, "1_fake": 0}
    assert m.load_manifest("loki").label_map == {}
    assert m.load_manifest("ddvqa").label_map == {}


def test_ffpp_generators_are_the_four_methods():
    assert m.load_manifest("ffpp").generators == ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]


def test_fakeclue_quota_states_release_sizes():
    quota = m.load_manifest("fakeclue").paper_quota
    notes = quota.notes.replace(",", "")
    assert re.search(r"test 5000\b", notes) and re.search(r"train 104343\b", notes)
    assert "65.6%" in notes
    per_cate = {"deepfake": (932, 236), "object": (479, 388), "satellite": (443, 432), "animal": (370, 379),
                "doc": (460, 116), "human": (282, 121), "scene": (226, 136)}
    for cate, (fake, real) in per_cate.items():
        assert f"{cate} {fake}/{real}" in notes
    assert sum(f + r for f, r in per_cate.values()) == 5000
    assert quota.images == 104343 + 5000


def test_unknown_facts_are_marked_not_invented():
    assert "unknown — check upstream" in m.load_manifest("cvusa").licence
    assert "unknown — check upstream" in m.load_manifest("ddvqa").licence


def test_missing_manifest_names_the_file():
    with pytest.raises(m.ManifestError, match=r"nope\.yaml not found"):
        m.load_manifest("nope")


@pytest.mark.parametrize("bad", ["", "../genimage", "genimage.yaml", "a/b"])
def test_bad_names_rejected(bad):
    with pytest.raises(m.ManifestError, match="invalid manifest name"):
        m.load_manifest(bad)


def _copy_to(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "manifests"
    shutil.copytree(REPO_MANIFESTS, d)
    monkeypatch.setenv(m.ENV_VAR, str(d))
    return d


def test_env_var_overrides_directory(tmp_path, monkeypatch):
    d = _copy_to(tmp_path, monkeypatch)
    (d / "vigor.yaml").unlink()
    assert "vigor" not in m.list_manifests()
    assert m.load_manifest("genimage").name == "GenImage"


def test_malformed_yaml_names_the_file(tmp_path, monkeypatch):
    d = _copy_to(tmp_path, monkeypatch)
    (d / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(m.ManifestError, match=r"broken\.yaml is not valid YAML"):
        m.load_manifest("broken")


def test_invalid_content_names_the_file(tmp_path, monkeypatch):
    d = _copy_to(tmp_path, monkeypatch)
    text = (d / "genimage.yaml").read_text(encoding="utf-8").replace("  nature: 1", "  nature: 2")
    (d / "genimage.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(m.ManifestError, match=r"genimage\.yaml is malformed") as err:
        m.load_manifest("genimage")
    assert "label_map" in str(err.value)


def test_unknown_key_and_bad_kind_rejected(tmp_path, monkeypatch):
    d = _copy_to(tmp_path, monkeypatch)
    text = (d / "chameleon.yaml").read_text(encoding="utf-8")
    (d / "extra.yaml").write_text(text + "surprise: 1\n", encoding="utf-8")
    (d / "kind.yaml").write_text(text.replace("kind: chameleon", "kind: webscrape"), encoding="utf-8")
    (d / "list.yaml").write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(m.ManifestError, match=r"extra\.yaml is malformed"):
        m.load_manifest("extra")
    with pytest.raises(m.ManifestError, match=r"kind\.yaml is malformed"):
        m.load_manifest("kind")
    with pytest.raises(m.ManifestError, match=r"list\.yaml must be a YAML mapping"):
        m.load_manifest("list")


def test_missing_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(m.ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(m.ManifestError, match="does not exist"):
        m.list_manifests()
