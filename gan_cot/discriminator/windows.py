"""Chains longer than the discriminator's positions: windows over the steps, each step scored in one of them.

A chain that fits is one window (the whole encoding). A longer one keeps its question (its first and last quarter
of the window's positions when the question alone is too long) and packs the steps into windows of at most
``max_len`` tokens: each window scores a run of steps that fits in half of the room left, and fills the other half
with as many of the preceding steps as fit, as context. A single step longer than the room keeps its end (where it
is scored). Every step gets a score; none sees more than ``max_len`` positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_cot.discriminator.layouts import Encoded


@dataclass(frozen=True)
class Window:
    ids: list[int]
    positions: list[int]  # where each scored step ends, in ``ids``
    steps: list[int]  # which steps of the chain those are


def windows(enc: Encoded, max_len: int | None) -> list[Window]:
    """The windows of one encoded chain (none when it has no steps)."""
    n = len(enc.ends)
    if not n:
        return []
    if max_len is None or len(enc.ids) <= max_len:
        return [Window(enc.ids, list(enc.ends), list(range(n)))]
    prefix = enc.ids[: enc.prefix]
    if len(prefix) > max_len // 2:
        prefix = prefix[: max_len // 4] + prefix[len(prefix) - max_len // 4 :]
    room = max_len - len(prefix)
    starts = [enc.prefix] + [e + 1 for e in enc.ends[:-1]]

    def span(a: int, b: int) -> int:  # tokens of steps a..b
        return enc.ends[b] - starts[a] + 1

    out, s = [], 0
    while s < n:
        if span(s, s) > room:  # one step longer than the room: its end, where it is scored
            out.append(Window(prefix + enc.ids[enc.ends[s] - room + 1 : enc.ends[s] + 1], [max_len - 1], [s]))
            s += 1
            continue
        e = s
        while e + 1 < n and span(s, e + 1) <= room // 2:
            e += 1
        c = s
        while c > 0 and span(c - 1, e) <= room:
            c -= 1
        base = len(prefix) - starts[c]
        ids = prefix + enc.ids[starts[c] : enc.ends[e] + 1]
        out.append(Window(ids, [enc.ends[k] + base for k in range(s, e + 1)], list(range(s, e + 1))))
        s = e + 1
    return out


def collate(rows: list[Window], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded batch on ``device``; ``positions`` [batch, max_steps] with -1 where a row has fewer steps."""
    width = max(len(w.ids) for w in rows)
    n_steps = max(len(w.positions) for w in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [batch, seq]
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.full((len(rows), n_steps), -1, dtype=torch.long)  # [batch, steps]
    for i, w in enumerate(rows):
        input_ids[i, : len(w.ids)] = torch.tensor(w.ids, dtype=torch.long)
        mask[i, : len(w.ids)] = 1
        positions[i, : len(w.positions)] = torch.tensor(w.positions, dtype=torch.long)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "positions": positions.to(device)}
