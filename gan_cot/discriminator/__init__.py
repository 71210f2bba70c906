"""The step-level discriminator: a token-classification model labelling each chain step useful/redundant/wrong.

``registry`` finds, fetches and checks discriminator checkpoints (registry names, archive URLs, Hub ids).
"""

from gan_cot.discriminator.registry import (
    DEFAULT_REGISTRY,
    CheckpointError,
    DiscriminatorSourceError,
    DownloadError,
    RegistryEntry,
    RegistryError,
    ResolvedCheckpoint,
    default_cache_dir,
    download_archive,
    load_registry,
    pack_checkpoint,
    resolve,
    resolve_source,
    sha256_file,
    validate_checkpoint,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "CheckpointError",
    "DiscriminatorSourceError",
    "DownloadError",
    "RegistryEntry",
    "RegistryError",
    "ResolvedCheckpoint",
    "default_cache_dir",
    "download_archive",
    "load_registry",
    "pack_checkpoint",
    "resolve",
    "resolve_source",
    "sha256_file",
    "validate_checkpoint",
]
