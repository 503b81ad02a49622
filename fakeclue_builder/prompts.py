"""Prompts: pick the annotation template for a row's (category, label, flags) and render it.

`prompts/` holds 12 annotation templates (7 fake ones, one per category; 5 real ones shared where the
plausibility checks coincide) and `aggregate.j2` for the Aggregate stage; `prompts/README.md` documents
them. Templates are Jinja2 with `StrictUndefined`: a variable a template uses but is not given raises,
and the row is dropped (`prompt_render_error`) instead of getting a prompt with a hole in it.

The directory is read once into memory (`PromptLibrary`): what is hashed is exactly what is rendered.
A missing or unparsable template is a `ConfigError` (`prompts.dir`); per-row problems are dropped rows.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import jinja2

from fakeclue_builder.config import ConfigError, PromptsConfig, stage_config_hash
from fakeclue_builder.records import CATEGORIES, FAKE, REAL, Row

log = logging.getLogger(__name__)

STAGE = "prompts"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
QUESTION = "Does the image looks real/fake?"  # FakeClue's (and DD-VQA's) literal question, "looks" included
SUFFIX = ".j2"
AGGREGATE = "aggregate"
NO_FORCED_ARTIFACTS = "no_forced_artifacts"  # the flag appended to a fake prompt id: "fake_scene+no_forced_artifacts"
LABEL_NAMES = {REAL: "real", FAKE: "fake"}

# (cate, label) -> template file stem. Real templates are shared where the plausibility checks coincide.
REGISTRY: dict[tuple[str, int], str] = {
    **{(cate, FAKE): f"fake_{cate}" for cate in CATEGORIES},
    ("deepfake", REAL): "real_face",  # FF++ original video frames: blending, identity, uniform compression
    ("human", REAL): "real_living",  # anatomy, skin/hair/fur texture, eyes, proportions
    ("animal", REAL): "real_living",
    ("object", REAL): "real_scene_object",  # physics, lighting, perspective, materials, legible text
    ("scene", REAL): "real_scene_object",
    ("satellite", REAL): "real_satellite",  # road networks, building footprints and shadows, scale
    ("doc", REAL): "real_doc",  # legible language, fonts, layout grid, scan traces
}

REASONS: dict[str, str] = {
    "unknown_category": "the row's cate is missing or not one of deepfake|human|animal|object|scene|satellite|doc",
    "unknown_label": "the row's label is neither 1 (real) nor 0 (fake)",
    "prompt_render_error": "the row's template failed to render (undefined variable, template error, empty text)",
}


class PromptRowError(ValueError):
    """A row that cannot be prompted; `reason` is a key of `REASONS`, the message is the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def parse_label(label: int | str) -> int:
    """1 / 0 / "real" / "fake" / "1" / "0" -> FakeClue's label (1 = real, 0 = fake)."""
    text = str(label).strip().lower()
    for value, name in LABEL_NAMES.items():
        if text in (name, str(value)):
            return value
    raise PromptRowError("unknown_label", f"label {label!r} is neither real (1) nor fake (0)")


def template_for(cate: str | None, label: int, no_forced_artifacts: bool = False) -> tuple[str, str]:
    """(prompt_id, template file name) for a row; the flag only applies to fakes."""
    if cate not in CATEGORIES:
        raise PromptRowError("unknown_category", f"cate {cate!r} is not one of {'|'.join(CATEGORIES)}")
    if label not in LABEL_NAMES:
        raise PromptRowError("unknown_label", f"label {label!r} is neither real (1) nor fake (0)")
    stem = REGISTRY[(cate, label)]
    prompt_id = f"{stem}+{NO_FORCED_ARTIFACTS}" if no_forced_artifacts and label == FAKE else stem
    return prompt_id, stem + SUFFIX


def prompt_ids() -> list[str]:
    """Every prompt id the registry can produce (the keys `prompts.few_shot` accepts)."""
    ids = set(REGISTRY.values()) | {f"fake_{cate}+{NO_FORCED_ARTIFACTS}" for cate in CATEGORIES}
    return sorted(ids)


def required_files() -> list[str]:
    return sorted({stem + SUFFIX for stem in REGISTRY.values()} | {AGGREGATE + SUFFIX})


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tidy(text: str) -> str:
    """Strip the ends and collapse runs of blank lines left by conditional blocks (deterministic)."""
    return re.sub(r"\n[ \t]*(\n[ \t]*)+\n", "\n\n", text).strip()


class PromptLibrary:
    """A prompts directory loaded once: validated, hashed, rendered from memory."""

    def __init__(self, directory: Path | str | None = None, few_shot: dict[str, list[str]] | None = None):
        self.directory = Path(directory) if directory is not None else DEFAULT_DIR
        self.few_shot = dict(few_shot or {})
        self.sources = self._read_sources()
        self.env = jinja2.Environment(
            loader=jinja2.DictLoader(self.sources), undefined=jinja2.StrictUndefined, autoescape=False,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        )
        self._compile_all()
        self._hash = self._compute_hash()
        self._cache: dict[tuple, tuple[str, str, str]] = {}
        unknown = sorted(set(self.few_shot) - set(prompt_ids()))
        if unknown:
            raise ConfigError(f"prompts.few_shot has unknown prompt id(s) {unknown}; use one of {prompt_ids()}")

    @classmethod
    def from_config(cls, cfg: PromptsConfig | None) -> "PromptLibrary":
        cfg = cfg or PromptsConfig()
        return cls(cfg.dir, cfg.few_shot)

    # ------------------------------------------------------------------------------------------ loading

    def _read_sources(self) -> dict[str, str]:
        where = f"prompts.dir {self.directory}"
        if not self.directory.is_dir():
            raise ConfigError(f"{where} is not a directory; point prompts.dir at a copy of the repo's prompts/ "
                              f"(or leave it unset for the default {DEFAULT_DIR})")
        missing = [name for name in required_files() if not (self.directory / name).is_file()]
        if missing:
            raise ConfigError(f"{where} is missing {', '.join(missing)}; every template of the default set is "
                              f"required: copy the missing file(s) from {DEFAULT_DIR} and edit them")
        sources = {}
        for path in sorted(self.directory.rglob("*" + SUFFIX)):
            name = path.relative_to(self.directory).as_posix()
            try:
                sources[name] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{where}: cannot read {name} as UTF-8 text: {e}") from None
        return sources

    def _compile_all(self) -> None:
        for name in self.sources:
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as e:
                raise ConfigError(f"prompts.dir {self.directory}: {name} line {e.lineno}: {e.message}; "
                                  f"fix the template (Jinja2 syntax)") from None

    def _compute_hash(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.sources):
            for part in (name, self.sources[name]):
                data = part.encode("utf-8")
                digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()

    def library_hash(self) -> str:
        """sha256 over every template's file name and contents (changes whenever any template does)."""
        return self._hash

    # ------------------------------------------------------------------------------------------ rendering

    def few_shot_for(self, prompt_id: str) -> list[str]:
        """Examples for a prompt id; a flagged id falls back to its base id ("fake_scene")."""
        if prompt_id in self.few_shot:
            return list(self.few_shot[prompt_id])
        return list(self.few_shot.get(prompt_id.split("+")[0], []))

    def _render(self, template: str, variables: dict[str, Any]) -> str:
        try:
            text = _tidy(self.env.get_template(template).render(**variables))
        except Exception as e:  # noqa: BLE001 — user template code: any failure is this row's problem
            raise PromptRowError("prompt_render_error", f"{template}: {type(e).__name__}: {e}") from e
        if not text:
            raise PromptRowError("prompt_render_error", f"{template}: rendered to empty text")
        return text

    def render_for(self, cate: str | None, label: int | str, no_forced_artifacts: bool = False,
                   few_shot: list[str] | None = None, generator: str | None = None) -> str:
        """Render the template for (cate, label, flag); `few_shot=None` takes the library's examples."""
        return self._render_parts(cate, parse_label(label), no_forced_artifacts, generator, few_shot)[1]

    def _render_parts(self, cate, label, no_forced_artifacts, generator, few_shot=None) -> tuple[str, str, str]:
        prompt_id, template = template_for(cate, label, no_forced_artifacts)
        flag = prompt_id.endswith("+" + NO_FORCED_ARTIFACTS)
        examples = self.few_shot_for(prompt_id) if few_shot is None else list(few_shot)
        text = self._render(template, {
            "label": label, "label_name": LABEL_NAMES[label], "cate": cate,
            "no_forced_artifacts": flag, "few_shot": examples, "generator": generator,
        })
        return prompt_id, text, sha256_text(text)

    def render(self, row: Row) -> tuple[str, str, str]:
        """(prompt_id, rendered text, sha256 of the text) for a row; raises `PromptRowError`."""
        key = (row.cate, row.label, bool(row.no_forced_artifacts), row.generator)
        if key not in self._cache:  # a template sees only these variables: the render is a function of them
            self._cache[key] = self._render_parts(*key)
        return self._cache[key]

    def render_aggregate(self, **variables: Any) -> str:
        """Render aggregate.j2: `label`, `cate`, `answers` ([{model, text}]), `consensus` (str or None).

        `label_name` is derived from `label` and `consensus` defaults to None; raises `PromptRowError`.
        """
        if "label" in variables:
            variables.setdefault("label_name", LABEL_NAMES.get(variables["label"], str(variables["label"])))
        variables.setdefault("consensus", None)
        return self._render(AGGREGATE + SUFFIX, variables)


# ---------------------------------------------------------------------------------------------- stage


def config_hash(cfg: PromptsConfig, library: PromptLibrary | None = None) -> str:
    """The stage's config hash: the resolved config plus the templates' contents (own wording -> new hash)."""
    library = library or PromptLibrary.from_config(cfg)
    return sha256_text(stage_config_hash(cfg) + library.library_hash())[:16]


def run(cfg: PromptsConfig, rows: Iterable[Row]) -> Iterator[Row]:
    """Set `prompt_id`, `prompt`, `prompt_sha256` on every kept row; unpromptable rows are dropped."""
    library = PromptLibrary.from_config(cfg)
    for row in rows:
        if row.kept:
            try:
                row.prompt_id, row.prompt, row.prompt_sha256 = library.render(row)
            except PromptRowError as e:
                row.drop(e.reason, str(e))
        yield row


def show(cate: str, label: int | str, *, no_forced_artifacts: bool = False, generator: str | None = None,
         cfg: PromptsConfig | None = None) -> str:
    """The rendered prompt for `fakeclue-builder prompts show`; bad cate/label are `ConfigError`s (CLI input)."""
    library = PromptLibrary.from_config(cfg)
    try:
        return library.render_for(cate, label, no_forced_artifacts=no_forced_artifacts, generator=generator)
    except PromptRowError as e:
        raise ConfigError(f"prompts show: {e}") from None
