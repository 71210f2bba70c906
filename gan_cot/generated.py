"""A generated chain in token ids, and where it ends: what both rollout engines (:mod:`gan_cot.generation`'s
HF engine and :mod:`gan_cot.vllm_engine`) return."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Generated:
    """One generated chain in token ids."""

    prompt_ids: list[int]
    completion_ids: list[int]  # the end-of-sequence token included when the chain ended
    finished: bool  # ended with the end-of-sequence token
    forced: bool = False  # the thinking budget ran out and the end of thinking was forced

    @property
    def num_tokens(self) -> int:
        """Generated tokens, the end-of-sequence token excluded."""
        return len(self.completion_ids) - int(self.finished)


def cut_at_eos(ids: list[int], eos: int, pad: int | None) -> tuple[list[int], bool]:
    """Generated ids up to and including the first end-of-sequence token; pad tokens the model wrote are dropped."""
    finished = eos in ids
    if finished:
        ids = ids[: ids.index(eos) + 1]
    if pad is not None and pad != eos:
        ids = [t for t in ids if t != pad]
    return ids, finished
