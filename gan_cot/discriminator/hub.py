"""Fetch a checkpoint from the Hugging Face Hub: ``snapshot_download`` of a pinned revision into the cache, weights as
safetensors, configs and tokenizer files only (never code), then the same checks as any other checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from gan_cot.discriminator.archive import DownloadError, _one_line
from gan_cot.discriminator.checkpoint import PICKLE_SUFFIXES, CheckpointError, validate_checkpoint

# What snapshot_download may fetch from the Hub: weights as safetensors, configs, tokenizer files.
HUB_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken"]
HUB_PICKLE_PATTERNS = [f"*{s}" for s in PICKLE_SUFFIXES]


def fetch_snapshot(repo_id: str, revision: str | None, hub_cache: Path, offline: bool, allow_pickle: bool,
                   not_found_hint: str = "") -> Path:  # fmt: skip
    """The snapshot folder of ``repo_id`` at ``revision`` (a branch, tag, PR ref or commit) in ``hub_cache``,
    downloaded unless ``offline``; every failure is a :class:`DownloadError` or :class:`CheckpointError` naming it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = repo_id + (f"@{revision}" if revision else "")
    patterns = HUB_ALLOW_PATTERNS + (HUB_PICKLE_PATTERNS if allow_pickle else [])
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=str(hub_cache), local_files_only=offline, allow_patterns=patterns
        )
    except LocalEntryNotFoundError as e:
        if offline:
            raise DownloadError(
                f"Hub checkpoint {label} is not in the cache {hub_cache}; run without --offline to download it"
            ) from e
        raise DownloadError(f"cannot fetch Hub checkpoint {label} (no connection to the Hub?): {_one_line(e)}") from e
    except GatedRepoError as e:
        raise DownloadError(f"Hub checkpoint {label} is gated; accept its terms and log in (hf auth login)") from e
    except RepositoryNotFoundError as e:
        raise DownloadError(f"Hub repository {repo_id} not found (or private){not_found_hint}") from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"Hub repository {repo_id} has no revision {revision!r}") from e
    except (OSError, ValueError) as e:
        raise DownloadError(f"cannot fetch Hub checkpoint {label}: {_one_line(e)}") from e
    folder = Path(folder)
    try:
        validate_checkpoint(folder, allow_pickle)
    except CheckpointError as e:
        raise CheckpointError(f"Hub checkpoint {label}: {e}") from e
    return folder
