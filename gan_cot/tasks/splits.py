"""Deterministic, disjoint train / validation / test splits of file-backed tasks, decided by each record's question.

A record's split follows from a hash of its question (whitespace and case folded), never from its line number, so
the same question always lands in the same split, a duplicated question cannot sit on both sides, and reordering or
appending lines moves no question from one split to another:

* a single file: about :data:`TEST_FRACTION` of the questions are ``test`` (at least one when the file holds two or
  more questions), the rest the training pool; only training splits a file (evaluation reads all of it);
* a folder of splits (or a dataset with train and test): ``test`` is the test data; the training pool is the train
  data less every question that is also a test question.

From the training pool, ``validation`` takes ``validation_size`` records but at most a tenth of the pool (at least
one when any is asked for), chosen by a second hash; ``train`` is the rest.
"""

from __future__ import annotations

import hashlib

TEST_FRACTION = 0.15  # about GSM8K's own share: 1,319 test questions of 8,792


def question_key(question: str) -> str:
    return " ".join(str(question).lower().split())


def unit(key: str, salt: str) -> float:
    """A stable number in [0, 1) for ``key`` (sha256, the same on every machine and Python)."""
    return int(hashlib.sha256(f"{salt}\0{key}".encode()).hexdigest()[:13], 16) / 16**13


def assign_splits(keys: list[str], validation_size: int, test_keys: set[str] | None = None) -> list[str | None]:
    """The split of each record (by its question key): ``train``, ``validation`` or ``test``; None for a record of a
    train source whose question is a test question. ``test_keys`` None: the records are one file, split three ways."""
    if test_keys is None:
        test = {k for k in keys if unit(k, "test") < TEST_FRACTION}
        if not test and len(set(keys)) > 1:
            test = {min(keys, key=lambda k: unit(k, "test"))}
        out: list[str | None] = ["test" if k in test else "train" for k in keys]
    else:
        out = [None if k in test_keys else "train" for k in keys]
    pool = [i for i, s in enumerate(out) if s == "train"]
    want = min(validation_size, max(1, len(pool) // 10)) if validation_size and len(pool) > 1 else 0
    taken = 0
    for key in sorted({keys[i] for i in pool}, key=lambda k: unit(k, "validation")):
        if taken >= want:
            break
        for i in pool:
            if keys[i] == key:
                out[i] = "validation"
                taken += 1
    return out
