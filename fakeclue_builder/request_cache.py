"""Per-request cache of the model stages (SQLite): a rerun or a crash never repeats a finished request.

The key is a hash of everything that determines an answer: image, model id + revision, rendered prompt,
sampling settings, response prefix and attempt. Answers are committed after every backend batch, so a
crash loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from fakeclue_builder.backends.base import Response


def request_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class RequestCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing committed; no fsync per batch
        self.db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, payload in self.db.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk):
                found[key] = Response(**json.loads(payload))
        return found

    def put_many(self, items: dict[str, Response]) -> None:
        rows = [(k, json.dumps({"text": r.text, "finish_reason": r.finish_reason, "tokens": r.tokens,
                                "logprobs": r.logprobs, "error": r.error})) for k, r in items.items() if r.error is None]
        with self.db:  # one transaction per batch
            self.db.executemany("INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
