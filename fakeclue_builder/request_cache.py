"""Per-request cache of the model stages (SQLite): a rerun or a crash never repeats a finished request.

The key is a hash of everything that determines an answer: image, model id + revision, rendered prompt,
sampling settings, response prefix and attempt. Answers are committed after every backend batch, so a
crash loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from fakeclue_builder.backends.base import Response


def request_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _retry_busy(action: Callable[[], Any], seconds: float = 120.0) -> Any:
    """Run `action`, retrying while another process holds the database (several workers share one cache;
    SQLite reports some conflicts, e.g. two connections switching to WAL at once, at once instead of waiting)."""
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class RequestCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        _retry_busy(self._setup)

    def _setup(self) -> None:
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
        def write() -> None:
            with self.db:  # one transaction per batch (rolled back on error, then retried)
                self.db.executemany("INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)", rows)

        _retry_busy(write)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
