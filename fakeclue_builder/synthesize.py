"""Synthesize: the fakes no open dataset has — satellite (diffusers, from real aerial tiles or from scene
prompts), documents (layout first, then content) and any category from a prompt list (diffusers).

The plan is one row per image to generate (`source = synth-<generator>`, `source_path = synth://<name>/<job>`,
seed and parameters in `meta`), derived deterministically from the config and the finished collect stage,
so the runner shards, resumes and counts it like any other stage. Each generated image is encoded once
(lossless, `synthesize.format`), probed and stored like any other blob. A fake derived from a real tile
carries that tile's group (`group_id`, or `image:<image_id>` when the tile has none) so that export never
splits them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

from fakeclue_builder import __version__
from fakeclue_builder.config import DocumentsGenerator, SatelliteGenerator, SynthesizeConfig
from fakeclue_builder.records import FAKE, REAL, Row

log = logging.getLogger(__name__)

STAGE = "synthesize"
SCENES = ("urban", "suburban", "natural")
MAX_FIGURE_SOURCES = 64  # real images offered to the document renderer as figure material


def generator_name(spec) -> str:
    return spec.name or spec.kind


def derive_seed(base: int, *keys: object) -> int:
    """A 31-bit seed from the base seed and a job's identity (independent of job order and batch)."""
    digest = hashlib.sha256(repr((base, *keys)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def group_of(row: Row) -> str:
    """The group a row belongs to; a row without one is its own group (`image:<image_id>`)."""
    return row.group_id or f"image:{row.image_id}"


def _job(spec, cfg: SynthesizeConfig, key: str, cate: str | None, **meta: str) -> Row:
    name = generator_name(spec)
    seed = derive_seed(cfg.seed, name, key)
    return Row(source=f"synth-{name}", source_path=f"synth://{name}/{key}", label=FAKE, cate=cate,
               generator=name, group_id=meta.pop("group_id", None) or f"synth:{name}:{key}",
               meta={"kind": spec.kind, "job": key, "seed": str(seed), **meta})


def _scene_of(tile: Row, index: int) -> str:
    parts = Path(tile.source_path).parts
    return next((p for p in reversed(parts) if p in SCENES), SCENES[index % len(SCENES)])


def plan(cfg: SynthesizeConfig, collected: list[Row]) -> list[Row]:
    """Every image to generate, in a stable order."""
    jobs: list[Row] = []
    for spec in cfg.generators:
        if isinstance(spec, DocumentsGenerator):
            jobs += [_job(spec, cfg, f"{i:06d}", "doc", doc_type=spec.doc_types[i % len(spec.doc_types)])
                     for i in range(spec.count)]
        elif isinstance(spec, SatelliteGenerator) and spec.mode == "img2img":
            tiles = [r for r in collected if r.cate == "satellite" and r.label == REAL
                     and (spec.tiles_from is None or r.source in spec.tiles_from)]
            if not tiles:
                log.warning("satellite generator %s: no real satellite tiles in collect (rows with cate "
                            "satellite); add a folder source with cate: satellite", generator_name(spec))
            for t, tile in enumerate(sorted(tiles, key=lambda r: r.image_id)):
                scene = _scene_of(tile, t)
                jobs += [_job(spec, cfg, f"{tile.image_id[:16]}-{k}", "satellite", scene=scene, mode="img2img",
                              derived_from=tile.image_id, tile_blob=tile.blob, group_id=group_of(tile))
                         for k in range(spec.per_tile)]
        elif isinstance(spec, SatelliteGenerator):
            jobs += [_job(spec, cfg, f"{i:06d}", "satellite", scene=SCENES[i % 3], mode="txt2img")
                     for i in range(spec.count)]
        else:
            jobs += [_job(spec, cfg, f"{p:04d}-{k}", spec.cate, prompt_index=str(p), mode="txt2img")
                     for p in range(len(spec.prompts)) for k in range(spec.per_prompt)]
    return jobs


def figure_sources(cfg: SynthesizeConfig, collected: list[Row]) -> list[str]:
    """Blobs of real images the document renderer may crop figures from (a seeded, bounded sample)."""
    wanted = None
    for spec in cfg.generators:
        if isinstance(spec, DocumentsGenerator) and spec.figures_from is not None:
            wanted = set(spec.figures_from) | (wanted or set())
    real = [r for r in collected if r.label == REAL and r.cate not in ("doc",) and (wanted is None or r.source in wanted)]
    real.sort(key=lambda r: derive_seed(cfg.seed, "figure", r.image_id))
    return [r.blob for r in real[:MAX_FIGURE_SOURCES]]


class Synthesizer:
    """Holds the loaded generators across shards (loaded on first use: a no-op rerun loads nothing)."""

    def __init__(self, cfg: SynthesizeConfig, run_dir: Path, figure_blobs: list[str]):
        from fakeclue_builder.images import BlobStore
        from fakeclue_builder.sources.base import LoadContext

        self.cfg, self.run_dir, self.figure_blobs = cfg, Path(run_dir), figure_blobs
        self.specs = {generator_name(s): s for s in cfg.generators}
        self.keys = {generator_name(s): f"synthesize.generators.{i}" for i, s in enumerate(cfg.generators)}
        self.ctx = LoadContext(BlobStore(self.run_dir, "copy"), max_pixels=10**9,
                               allowed_formats=frozenset({cfg.format}))
        self._workers: dict[str, object] = {}
        self._figures = None

    def check(self) -> None:
        """Config problems before any work: model folders, pipeline classes, fonts, corpus, layouts."""
        for name, spec in self.specs.items():
            self._worker(name, load=False)

    def _worker(self, name: str, load: bool = True):
        if name not in self._workers:
            spec = self.specs[name]
            if isinstance(spec, DocumentsGenerator):
                from fakeclue_builder.synth.documents import DocumentRenderer

                self._workers[name] = DocumentRenderer(spec)
            else:
                from fakeclue_builder.synth.diffusion import DiffusersRunner

                task = "img2img" if getattr(spec, "mode", "txt2img") == "img2img" else "txt2img"
                runner = DiffusersRunner(spec, task, key=self.keys[name])
                runner.check()
                self._workers[name] = runner
        worker = self._workers[name]
        if load and hasattr(worker, "load"):
            worker.load()  # idempotent: loads the pipeline once
        return worker

    def __call__(self, rows: Iterable[Row]) -> Iterator[Row]:
        """Generate every kept row of a shard (rows are filled in place; dropped ones say why)."""
        for name, group in groupby(rows, key=lambda r: r.generator):
            group = list(group)
            todo = [r for r in group if r.kept]
            if todo:
                self._generate(name, todo)
            yield from group

    def _generate(self, name: str, rows: list[Row]) -> None:
        spec = self.specs.get(name)
        if spec is None:
            for row in rows:
                row.drop("unknown_generator", f"generator {name!r} is not in synthesize.generators")
            return
        worker = self._worker(name)
        if isinstance(spec, DocumentsGenerator):
            for row in rows:
                self._document(worker, spec, row)
        else:
            self._diffusion(worker, spec, rows)

    def _document(self, renderer, spec: DocumentsGenerator, row: Row) -> Row:
        page = renderer.render(int(row.meta["job"]), int(row.meta["seed"]), self.figures())
        row.meta.update({k: str(v) for k, v in page.params.items()})
        row.meta["layout"] = json.dumps([{"kind": b.kind, "box": list(b.box)} for b in page.layout])
        row.meta["generator_version"] = f"fakeclue-builder {__version__} documents"
        return self._store(row, page.image)

    def figures(self) -> list:
        if self._figures is None:
            from PIL import Image

            self._figures = []
            for blob in self.figure_blobs:
                try:
                    with Image.open(self.run_dir / blob) as img:
                        img.draft("RGB", (512, 512))
                        self._figures.append(img.convert("RGB"))
                except Exception as e:  # noqa: BLE001 - a bad figure source is skipped, not fatal
                    log.warning("figure source %s unreadable (%s); skipped", blob, e)
        return self._figures

    def _diffusion(self, runner, spec, rows: list[Row]) -> None:
        from PIL import Image, ImageOps

        seeds = [int(r.meta["seed"]) for r in rows]
        provenance = {f"diffusers_{k}": str(v) for k, v in runner.provenance().items()}
        if getattr(spec, "mode", "txt2img") == "img2img":
            tiles, ok = [], []
            for row in rows:
                try:
                    with Image.open(self.run_dir / row.meta["tile_blob"]) as img:
                        tile = img.convert("RGB")
                    if spec.tile_size:
                        tile = ImageOps.fit(tile, (spec.tile_size, spec.tile_size), Image.Resampling.LANCZOS)
                    tiles.append(tile)
                    ok.append(row)
                except Exception as e:  # noqa: BLE001 - recorded per row
                    row.drop("decode_failed", f"real tile {row.meta['tile_blob']}: {type(e).__name__}: {e}")
            prompts = [spec.prompts[r.meta["scene"]] for r in ok]
            strengths = [spec.strength[r.meta["scene"]] for r in ok]
            images = runner.img2img(tiles, prompts, strengths, [int(r.meta["seed"]) for r in ok]) if ok else []
            for row, prompt, strength in zip(ok, prompts, strengths):
                row.meta.update(prompt=prompt, strength=str(strength))
        else:
            prompts = [spec.prompts[r.meta["scene"]] if "scene" in r.meta else spec.prompts[int(r.meta["prompt_index"])]
                       for r in rows]
            ok = rows
            images = runner.txt2img(prompts, seeds)
            for row, prompt in zip(rows, prompts):
                row.meta["prompt"] = prompt
        for row, image in zip(ok, images):
            row.meta.update(provenance)
            row.meta["generator_version"] = f"fakeclue-builder {__version__} {spec.kind}"
            self._store(row, image)

    def _store(self, row: Row, image) -> Row:
        buf = io.BytesIO()
        image.save(buf, format=self.cfg.format, **({"compress_level": 6} if self.cfg.format == "PNG" else
                                                  {"lossless": True}))
        ingested = self.ctx.ingest(row, buf.getvalue())
        ingested.encoding = f"{self.cfg.format.lower()}-lossless:synth-{row.meta['kind']}"
        return ingested


def balance(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """fake/real counts per category (uncategorized rows under `?`), for the report after synthesize."""
    counts: dict[str, Counter] = {}
    for row in rows:
        counts.setdefault(row.cate or "?", Counter())["fake" if row.label == FAKE else "real"] += 1
    return {cate: {"fake": c["fake"], "real": c["real"]} for cate, c in sorted(counts.items())}


def run(cfg: SynthesizeConfig, run_dir: Path, *, rank: int = 0, world_size: int = 1, force: bool = False,
        progress=None, before_write=None):
    """Plan from the finished collect stage, check every generator's config, then generate shard by shard."""
    from fakeclue_builder.config import ConfigError, stage_config_hash
    from fakeclue_builder.store import StageDir, StageRunner, shard_rows

    collect = StageDir(run_dir, "collect")
    if not collect.is_complete():
        raise ConfigError(f"synthesize reads collect's output, which has not finished in {run_dir}; "
                          f"run 'fakeclue-builder collect --run-dir {run_dir}' first")
    collected = list(collect.iter_rows())
    jobs = plan(cfg, collected)
    synthesizer = Synthesizer(cfg, run_dir, figure_sources(cfg, collected))
    synthesizer.check()
    if before_write:
        before_write()
    runner = StageRunner(run_dir, STAGE, stage_config_hash(cfg), rank=rank, world_size=world_size, force=force,
                         progress=progress)
    return runner.run(shard_rows(jobs, cfg.shard_size), synthesizer)
