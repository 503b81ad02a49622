"""Training examples from our Parquet export or from the released FakeClue json.

Text columns (label, question, answer, image_id) are read once at start (small); image bytes stay on disk and are
read per item from memory-mapped Parquet row groups (a small per-worker cache of row groups) and decoded per item.
Bad rows are skipped, never fatal: empty answers and unknown labels when the index is built, undecodable images when
they are met (the next good row is served instead), each counted and logged.
"""

from __future__ import annotations

import io
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakeclue_builder.config_base import ConfigError

log = logging.getLogger(__name__)

LABEL_NAMES = ("fake", "real")  # the export's ClassLabel: 0 = fake, 1 = real (FakeClue's convention)


@dataclass(frozen=True)
class ExampleText:
    """The text side of one training example (its image is fetched separately by index)."""

    image_id: str
    label: int
    question: str
    answer: str


@dataclass
class SkipCounter:
    """Rows left out, by reason (logged at the end of index building and when images fail to decode)."""

    counts: dict[str, int]

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def report(self, what: str) -> None:
        if self.counts:
            log.warning("%s: skipped %s", what, ", ".join(f"{n} row(s) {r}" for r, n in sorted(self.counts.items())))


def _valid_text(label: Any, answer: Any, skipped: SkipCounter) -> bool:
    if label not in (0, 1):
        skipped.add("with a label other than 0 (fake) / 1 (real)")
        return False
    if not isinstance(answer, str) or not answer.strip():
        skipped.add("with an empty answer")
        return False
    return True


class ParquetImages:
    """Image bytes of an export's shards: (file, row group, row) per example, row groups read lazily."""

    def __init__(self, files: list[Path], locations: list[tuple[int, int, int]], cache_size: int) -> None:
        self.files, self.locations, self.cache_size = files, locations, cache_size
        self._cache: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._readers: dict[int, Any] = {}

    def __getstate__(self) -> dict:  # open readers do not cross process boundaries (DataLoader workers)
        return {**self.__dict__, "_cache": OrderedDict(), "_readers": {}}

    def _group(self, file_index: int, group: int):
        import pyarrow.parquet as pq

        key = (file_index, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if file_index not in self._readers:
            self._readers[file_index] = pq.ParquetFile(self.files[file_index], memory_map=True)
        column = self._readers[file_index].read_row_group(group, columns=["image"]).column("image")
        self._cache[key] = column
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return column

    def __call__(self, index: int) -> bytes:
        file_index, group, row = self.locations[index]
        value = self._group(file_index, group)[row].as_py()
        data = value.get("bytes") if isinstance(value, dict) else None
        if not data:
            raise ValueError("the image cell holds no bytes")
        return data


class FileImages:
    """Image bytes of the released FakeClue layout: paths relative to an image root."""

    def __init__(self, root: Path, paths: list[str]) -> None:
        self.root, self.paths = Path(root), paths

    def __call__(self, index: int) -> bytes:
        return (self.root / self.paths[index]).read_bytes()


@dataclass
class ExampleSource:
    """Everything a training dataset needs: the texts and a way to fetch each example's image bytes."""

    texts: list[ExampleText]
    image_bytes: Any  # Callable[[int], bytes], picklable
    origin: str


def export_files(export_dir: Path, split: str) -> list[Path]:
    data_dir = Path(export_dir) / "data"
    if not Path(export_dir).is_dir():
        raise ConfigError(f"export directory {export_dir} does not exist; run `fakeclue-builder export` first "
                          "(or set train.data, or train.json + train.image_root for the released FakeClue)")
    files = sorted(data_dir.glob(f"{split}-*.parquet"))
    if not files:
        raise ConfigError(f"no {data_dir}/{split}-*.parquet in the export; run `fakeclue-builder export` first "
                          f"or set train.split (found: {sorted(p.name for p in data_dir.glob('*.parquet'))})")
    return files


def load_export(export_dir: Path, split: str = "train", max_rows: int | None = None,
                cache_size: int = 4) -> ExampleSource:
    """Index an export's `<split>` shards (text columns only; images stay on disk)."""
    import pyarrow.parquet as pq

    files = export_files(export_dir, split)
    texts: list[ExampleText] = []
    locations: list[tuple[int, int, int]] = []
    skipped = SkipCounter({})
    for file_index, path in enumerate(files):
        reader = pq.ParquetFile(path, memory_map=True)
        missing = {"image", "label", "answer"} - set(reader.schema_arrow.names)
        if missing:
            raise ConfigError(f"{path} lacks column(s) {sorted(missing)}; re-run `fakeclue-builder export`")
        columns = [c for c in ("label", "answer", "question", "image_id") if c in reader.schema_arrow.names]
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=columns).to_pydict()
            for row in range(len(table["label"])):
                if max_rows is not None and len(texts) >= max_rows:
                    break
                label, answer = table["label"][row], table["answer"][row]
                if not _valid_text(label, answer, skipped):
                    continue
                question = (table.get("question") or [None] * (row + 1))[row]
                image_id = (table.get("image_id") or [None] * (row + 1))[row] or f"{path.name}:{group}:{row}"
                texts.append(ExampleText(str(image_id), int(label), question or "", answer.strip()))
                locations.append((file_index, group, row))
    skipped.report(f"export {export_dir} ({split})")
    return ExampleSource(texts, ParquetImages(files, locations, cache_size), f"export {export_dir} ({split})")


def _conversation_answer(record: dict) -> tuple[str | None, str | None]:
    question = answer = None
    for turn in record.get("conversations") or []:
        if turn.get("from") == "human" and question is None:
            question = str(turn.get("value", "")).replace("<image>", "").strip()
        elif turn.get("from") == "gpt" and answer is None:
            answer = turn.get("value")
    return question, answer


def load_fakeclue_json(json_path: Path, image_root: Path, max_rows: int | None = None) -> ExampleSource:
    """Index the released FakeClue `data_json/train.json` (LLaVA conversations) + its unzipped image folder."""
    if not Path(json_path).is_file():
        raise ConfigError(f"train.json {json_path} does not exist; point it at FakeClue's data_json/train.json")
    if not Path(image_root).is_dir():
        raise ConfigError(f"train.image_root {image_root} is not a folder; unzip FakeClue's train.zip and point to it")
    try:
        records = json.loads(Path(json_path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"train.json {json_path} is not valid JSON: {e}") from None
    texts: list[ExampleText] = []
    paths: list[str] = []
    skipped = SkipCounter({})
    for record in records:
        if max_rows is not None and len(texts) >= max_rows:
            break
        question, answer = _conversation_answer(record)
        if not record.get("image"):
            skipped.add("without an image path")
            continue
        if not _valid_text(record.get("label"), answer, skipped):
            continue
        texts.append(ExampleText(str(record["image"]), int(record["label"]), question or "", answer.strip()))
        paths.append(str(record["image"]))
    skipped.report(f"json {json_path}")
    return ExampleSource(texts, FileImages(image_root, paths), f"json {json_path}")


def decode_image(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


class TrainExamples:
    """A map-style torch dataset: item i -> {image (PIL RGB), question, answer, label, image_id}.

    A row whose image cannot be read or decoded is skipped: it is logged, remembered, and the next good row is
    served in its place (so a batch is always full)."""

    def __init__(self, source: ExampleSource, question: str) -> None:
        if not source.texts:
            raise ConfigError(f"{source.origin} has no usable rows (see the skipped-row warnings above)")
        self.source, self.question = source, question
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.source.texts)

    def _load(self, index: int):
        try:
            return decode_image(self.source.image_bytes(index))
        except Exception as e:  # noqa: BLE001 - any unreadable image is a skipped row, never a crash
            self.bad.add(index)
            log.warning("skipped row %s (%s): image unreadable: %s (%d undecodable row(s) so far in this worker)",
                        index, self.source.texts[index].image_id, e, len(self.bad))
            return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            if i in self.bad:
                continue
            image = self._load(i)
            if image is not None:
                text = self.source.texts[i]
                return {"image": image, "question": self.question, "answer": text.answer,
                        "label": text.label, "image_id": text.image_id}
        raise ConfigError(f"no row of {self.source.origin} has a readable image")
