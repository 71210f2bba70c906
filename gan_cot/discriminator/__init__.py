"""The step-level discriminator: any step scorer (gan-cot's own three-way classifiers and the process reward models
people have) labelling each chain step useful / redundant / wrong.

``model`` scores (``Discriminator``), ``card`` holds a checkpoint's scoring settings and label map, ``layouts`` reads
the checkpoint layouts, ``redundancy`` gives two-way scorers their redundant, ``windows`` scores long chains,
``checks`` adds rule checks. ``registry`` finds checkpoints (registry names, archive URLs, Hub ids, local folders),
``hub`` and ``archive`` fetch them, ``checkpoint`` checks and packs checkpoint folders.
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
