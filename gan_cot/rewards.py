"""Sequence-level length rewards from the chain-compression literature, and their TRL adapters.

Each reward is a pure function over one **group**: the completions sampled for one question, given as
``correct`` (did the final answer check out) and ``lengths`` (completion tokens, end-of-sequence token
excluded). It returns one float per completion. Nothing here looks at the text of a chain; step-level
credit lives in :mod:`gan_cot.credit`.

:class:`GroupRewardFunc` turns any of them into a reward function for TRL's ``GRPOTrainer``. TRL (1.x)
calls a reward function once per generation batch with ``prompts``, ``completions``, ``completion_ids``
and every dataset column as keyword arguments, one value per completion, and lays the batch out as
consecutive blocks of ``num_generations`` completions of the same prompt (its ``RepeatSampler``). With
several processes a block can straddle two of them: TRL gathers the rewards of all processes before it
normalises per group, so the adapter gathers correctness and lengths the same way, scores whole groups,
and hands back the slice of its own process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# keyword arguments TRL passes to every reward function that are not dataset columns
_TRL_EXTRAS = ("trainer_state", "log_extra", "log_metric", "environments")


def _as_lists(correct, lengths) -> tuple[list[bool], list[float]]:
    if hasattr(correct, "tolist"):
        correct = correct.tolist()
    if hasattr(lengths, "tolist"):
        lengths = lengths.tolist()
    correct = [bool(c) for c in correct]
    lengths = [float(n) for n in lengths]
    if len(correct) != len(lengths):
        raise ValueError(
            f"a group needs one length per completion: {len(correct)} correct flags, {len(lengths)} lengths"
        )
    if not lengths:
        raise ValueError("a group needs at least one completion")
    return correct, lengths


def kimi_length_reward(correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
    """Kimi k1.5 long2short group length reward (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement Learning
    with LLMs", section 2.3.3).

    ``lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)`` over the group; a correct completion gets
    ``lambda_i``, a wrong one ``min(0, lambda_i)`` (a short wrong answer is never rewarded for being short).
    When every completion has the same length the reward is 0. The paper adds this to the correctness
    reward with a weight; this function is the length term alone.
    """
    correct, lengths = _as_lists(correct, lengths)
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lam = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [lm if c else min(0.0, lm) for c, lm in zip(correct, lam)]


def o1_pruner_reward(
    correct: Sequence[bool],
    lengths: Sequence[int],
    mean_len: float | None = None,
    mean_acc: float | None = None,
    lam: float = 2.0,
) -> list[float]:
    """O1-Pruner length-harmonizing reward (Luo et al. 2025, "O1-Pruner: Length-Harmonizing Fine-Tuning for
    O1-Like Reasoning Pruning").

    ``(mean_len / len_i - 1) + lam * (correct_i - mean_acc)``, where ``mean_len`` and ``mean_acc`` are the
    reference model's mean length and accuracy on this question (the paper estimates them from K samples of the
    model before pruning). Left as None they default to this group's own means. ``lam`` weighs the accuracy
    penalty against the length ratio. A zero length counts as one token, so an empty completion gets a large
    but finite reward.
    """
    correct, lengths = _as_lists(correct, lengths)
    if mean_len is None:
        mean_len = sum(lengths) / len(lengths)
    if mean_acc is None:
        mean_acc = sum(correct) / len(correct)
    return [(mean_len / max(n, 1.0) - 1.0) + lam * (float(c) - mean_acc) for c, n in zip(correct, lengths)]


def shorterbetter_reward(
    correct: Sequence[bool],
    lengths: Sequence[int],
    alpha: float = 2.0,
    beta: float = 0.001,
    no_correct: str = "shortest",
) -> list[float]:
    """ShorterBetter reward (Yi et al. 2025, "ShorterBetter: Guiding Reasoning Models to Find Optimal Inference
    Length").

    ``alpha * correct_i - beta * |len_i - SOL|`` with the sample optimal length ``SOL`` = the length of the
    shortest correct completion in the group. When no completion in the group is correct there is no such
    length; here ``SOL`` is then the shortest length in the group (``no_correct="shortest"``, the default: every
    completion is still pushed toward the shortest attempt) or the group's mean length (``no_correct="mean"``:
    a wrong group gets no pull toward shortness beyond its own average).
    """
    correct, lengths = _as_lists(correct, lengths)
    right = [n for c, n in zip(correct, lengths) if c]
    if right:
        sol = min(right)
    elif no_correct == "shortest":
        sol = min(lengths)
    elif no_correct == "mean":
        sol = sum(lengths) / len(lengths)
    else:
        raise ValueError(f"no_correct: {no_correct!r} is not allowed; choose shortest or mean")
    return [alpha * float(c) - beta * abs(n - sol) for c, n in zip(correct, lengths)]


def l1_prompt(question: str, budget: int) -> str:
    """L1's length instruction appended to the question (Aggarwal & Welleck 2025)."""
    return f"{question} Think for {int(budget)} tokens."


def l1_reward(correct: Sequence[bool], lengths: Sequence[int], budget: int, a: float = 0.0003) -> list[float]:
    """L1-Exact reward (Aggarwal & Welleck 2025, "L1: Controlling How Long A Reasoning Model Thinks With
    Reinforcement Learning").

    The prompt asks for a length (:func:`l1_prompt`: "Think for N tokens."); the reward is
    ``correct_i - a * |len_i - N|`` with the paper's ``a = 0.0003``. It needs no group, but takes the same
    arguments as the others so one adapter serves all four.
    """
    correct, lengths = _as_lists(correct, lengths)
    return [float(c) - a * abs(n - budget) for c, n in zip(correct, lengths)]


def correctness_reward(correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
    """1 for a correct final answer, else 0 (the accuracy term that Kimi's length reward is added to)."""
    correct, _ = _as_lists(correct, lengths)
    return [float(c) for c in correct]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "kimi": kimi_length_reward,
    "o1pruner": o1_pruner_reward,
    "shorterbetter": shorterbetter_reward,
    "l1": l1_reward,
    "correct": correctness_reward,
}


def _gather(obj) -> tuple[list, int]:
    """``obj`` from every process (in rank order) and this process's rank; a single process gets ``[obj]``."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return [obj], 0
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj], 0
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out, dist.get_rank()


class GroupRewardFunc:
    """A group reward as a TRL ``GRPOTrainer`` reward function.

    ``is_correct(completion, row)`` checks one completion against its dataset row (a dict of that
    completion's column values). ``columns`` maps a reward argument to a dataset column whose value (taken
    from the group's first row) is passed per group, e.g. ``{"budget": "budget"}`` for L1 or
    ``{"mean_len": "ref_mean_len"}`` for O1-Pruner; ``kwargs`` are fixed reward arguments. With ``log_stats``
    the batch's accuracy and mean length go to TRL's logs (``<name>/accuracy``, ``<name>/mean_tokens``). Lengths count
    ``completion_ids`` without ``stop_ids`` (end-of-sequence and padding), as :mod:`gan_cot.evaluate` counts.

    ``completions_seen`` counts every completion scored over all processes (the rollouts used for training).
    """

    def __init__(
        self,
        reward: Callable[..., list[float]] | str,
        is_correct: Callable[[str, dict], bool],
        group_size: int,
        stop_ids: Sequence[int] = (),
        columns: dict[str, str] | None = None,
        name: str | None = None,
        log_stats: bool = True,
        **kwargs,
    ):
        if isinstance(reward, str):
            if reward not in REWARDS:
                raise ValueError(f"unknown reward {reward!r}; choose one of {sorted(REWARDS)}")
            reward = REWARDS[reward]
        if group_size < 1:
            raise ValueError(f"group_size must be positive, got {group_size}")
        self.reward = reward
        self.is_correct = is_correct
        self.group_size = group_size
        self.stop_ids = set(stop_ids)
        self.columns = dict(columns or {})
        self.kwargs = kwargs
        self.log_stats = log_stats
        self.__name__ = name or reward.__name__  # TRL names a reward function's metrics after it
        self.completions_seen = 0
        self.correct_seen = 0

    def _rows(self, n: int, kwargs: dict) -> list[dict]:
        cols = {k: v for k, v in kwargs.items() if k not in _TRL_EXTRAS}
        for k, v in cols.items():
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise ValueError(f"dataset column {k!r}: expected one value per completion ({n})")
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        if completion_ids is None:
            raise ValueError("GroupRewardFunc needs completion_ids (GRPOTrainer passes them) to count tokens")
        n = len(completions)
        rows = self._rows(n, kwargs)
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]  # conversational: last turn
        local = {
            "correct": [bool(self.is_correct(t, row)) for t, row in zip(texts, rows)],
            "lengths": [sum(1 for t in ids if t not in self.stop_ids) for ids in completion_ids],
            "keys": [str(p) for p in prompts],
            "group_args": [{arg: row[col] for arg, col in self.columns.items()} for row in rows],
        }
        parts, rank = _gather(local)
        merged = {k: [x for p in parts for x in p[k]] for k in local}
        total = len(merged["correct"])
        if total % self.group_size:
            raise ValueError(
                f"{total} completions do not split into groups of {self.group_size}; "
                "group_size must equal GRPOConfig.num_generations"
            )
        rewards: list[float] = []
        for start in range(0, total, self.group_size):
            block = slice(start, start + self.group_size)
            if len(set(merged["keys"][block])) != 1:
                raise ValueError(
                    f"completions {start}..{start + self.group_size - 1} do not share one prompt; "
                    "group_size must equal GRPOConfig.num_generations"
                )
            args = {**self.kwargs, **merged["group_args"][start]}
            rewards += [float(r) for r in self.reward(merged["correct"][block], merged["lengths"][block], **args)]
        self.completions_seen += total
        self.correct_seen += sum(merged["correct"])
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and self.log_stats:
            log_metric(f"{self.__name__}/accuracy", sum(merged["correct"]) / total)
            log_metric(f"{self.__name__}/mean_tokens", sum(merged["lengths"]) / total)
        offset = sum(len(p["correct"]) for p in parts[:rank])
        return rewards[offset : offset + n]
