"""The step-level discriminator: a token-classification model labelling each chain step useful/redundant/wrong.

``registry`` finds discriminator checkpoints (registry names, archive URLs, Hub ids, local folders),
``archive`` fetches and unpacks checkpoint archives, ``checkpoint`` checks and packs checkpoint folders.
"""

from gan_cot.discriminator.archive import DownloadError, download_archive
from gan_cot.discriminator.checkpoint import (
    CheckpointError,
    DiscriminatorSourceError,
    pack_checkpoint,
    sha256_file,
    validate_checkpoint,
)
from gan_cot.discriminator.registry import (
    DEFAULT_REGISTRY,
    RegistryEntry,
    RegistryError,
    ResolvedCheckpoint,
    default_cache_dir,
    load_registry,
    resolve,
    resolve_source,
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
