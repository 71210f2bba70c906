"""No tracked file outside tests/ holds an absolute path of the machine that wrote it (cards, configs, docs)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# An absolute path under a machine's work, temporary or home folders, inside quotes or after whitespace or '='.
MACHINE_PATH = re.compile(
    r"""(?:\A|(?<=["'`\s=]))(?<![\w.])/(?:work|tmp|home|root|Users|mnt|var/folders)/[\w.-][^\s"'`]*"""
)
BINARY_SUFFIXES = (".safetensors",)


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e})")
    return [name for name in out.stdout.decode("utf-8").split("\0") if name]


def test_no_tracked_file_holds_a_machine_path():
    found = []
    for name in tracked_files():
        if name.startswith("tests/") or name.endswith(BINARY_SUFFIXES):
            continue
        try:
            text = (REPO / name).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):  # deleted in the working tree, a folder, or binary
            continue
        found += [f"{name}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    listed = "\n".join(found)
    assert not found, f"absolute paths of a machine in tracked files (make them repository-relative):\n{listed}"
