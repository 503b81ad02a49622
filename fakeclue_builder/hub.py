"""`push`: upload an export folder to the Hugging Face Hub as a dataset repo (resumable), or list it (dry run).

The token comes from `HF_TOKEN` or the login cache (`hf auth login`) through huggingface_hub; it is never
printed, logged or written. Stage bookkeeping (markers, stats, dropped rows, temp files) stays local.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# what stays local: the stage's bookkeeping and temp files (same patterns given to upload_folder)
HUB_IGNORE = ["_done/*", "_manifest.json", "_stats.json", "dropped.parquet", ".*", "*/.*", "*.tmp"]


class PushError(Exception):
    """The upload could not be done; the message says why and what to do (and never contains the token)."""


@dataclass(frozen=True)
class HubFile:
    path: str  # relative, posix
    size: int


def is_ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in HUB_IGNORE)


def hub_files(folder: Path) -> list[HubFile]:
    """Every file of `folder` that `push` uploads, sorted by path."""
    folder = Path(folder)
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if not is_ignored(rel):
                files.append(HubFile(rel, path.stat().st_size))
    return sorted(files, key=lambda f: f.path)


def _check_folder(folder: Path) -> list[HubFile]:
    if not (folder / "README.md").is_file() or not (folder / "_stats.json").is_file():
        raise PushError(f"{folder} is not a finished export (no README.md or _stats.json); run "
                        f"'fakeclue-builder export --run-dir {folder.parent}' first")
    return hub_files(folder)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _explain(exc: Exception, token: str | None) -> str:
    from huggingface_hub import constants

    name = type(exc).__name__
    detail = _redact(str(exc).splitlines()[0] if str(exc) else "", token)[:300]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (f"the Hub refused the token (HTTP {status}: {detail}); create a write token at "
                "https://huggingface.co/settings/tokens and set HF_TOKEN or run 'hf auth login'")
    if status is not None:
        return f"the Hub answered HTTP {status} ({detail}); check --repo-id and your rights on it, then rerun"
    if "Offline" in name:
        return "HF_HUB_OFFLINE is set; unset it to push"
    return (f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({name}: {detail}); check the network "
            "(or HF_ENDPOINT) and rerun — files already uploaded are skipped")


def push(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         dry_run: bool = False, commit_message: str | None = None) -> list[HubFile]:
    """Upload `folder` to the dataset repo `repo_id` (created if needed; `revision` = a branch, created if
    needed). With `dry_run`, nothing is contacted: returns the files that would go up."""
    folder = Path(folder)
    files = _check_folder(folder)
    if dry_run:
        return files
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run 'hf auth login' (a token with write access)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
                          ignore_patterns=HUB_IGNORE,
                          commit_message=commit_message or f"Upload FakeClue export ({len(files)} files)")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message, the token redacted
        raise PushError(_explain(exc, token)) from None
    return files
