"""Batched generation with a thinking budget: the one path the trainer's rollouts, evaluation, the baselines and the
automatic labeler all sample through.

:func:`generate_ids` runs one left-padded batch: ``max_new_tokens`` of thinking (the budget), then, for every chain
that has not ended, the end-of-thinking marker (unless the chain already wrote it) and ``max_answer_tokens`` greedy
tokens to answer, batched, each chain under its own alpha. :func:`generate` splits questions into batches, renders
their prompts and returns text completions per question, drawn as a :class:`Sampling` says.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria

from gan_cot.generated import Generated, cut_at_eos
from gan_cot.models import render_prompt


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int  # generated tokens, end-of-sequence token excluded
    finished: bool  # ended with the end-of-sequence token inside the budget
    forced: bool = False  # the end of thinking was forced


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _scaled(model, alpha):
    """Every row's LoRA delta at its alpha (None: the model as it is)."""
    if alpha is None:
        return nullcontext()
    from gan_cot.gate.scaling import gated_inference

    return gated_inference(model, alpha)


def _left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for j, s in enumerate(seqs):
        ids[j, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        att[j, width - len(s) :] = 1
    return ids.to(device), att.to(device)


class ThinkingBudget(StoppingCriteria):
    """Stops each row of a generation on its own (``generate`` pads a stopped row): when its thinking has run
    ``max_think`` tokens without the end-of-thinking marker (the end is then forced), or when its answer after the
    marker has run ``max_answer`` tokens. ``stopped[row]`` is the row's length and the reason (``think``/``answer``).
    """

    def __init__(self, tokenizer, width: int, marker: str, max_think: int, max_answer: int):
        self.tokenizer = tokenizer
        self.width = width
        self.marker = marker.strip()
        self.tail = len(tokenizer(self.marker, add_special_tokens=False)["input_ids"]) + 4
        self.max_think = max_think
        self.max_answer = max_answer
        self.ended_at: dict[int, int] = {}
        self.stopped: dict[int, tuple[int, str]] = {}
        self._ends: dict[int, bool] = {}

    def _may_end(self, token: int) -> bool:
        """Whether a token can be the last of the marker (its text holds the marker's last character): only then
        is the row's tail decoded."""
        if token not in self._ends:
            self._ends[token] = self.marker[-1] in self.tokenizer.decode([token], skip_special_tokens=True)
        return self._ends[token]

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        n = input_ids.shape[1] - self.width
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in range(input_ids.shape[0]):
            if row in self.stopped:
                done[row] = True
                continue
            if row not in self.ended_at:
                if self._may_end(int(input_ids[row, -1])) and self.marker in self.tokenizer.decode(
                    input_ids[row, max(self.width, input_ids.shape[1] - self.tail) :].tolist(),
                    skip_special_tokens=True,
                ):
                    self.ended_at[row] = n
                elif n >= self.max_think:
                    self.stopped[row] = (n, "think")
            if row in self.ended_at and n - self.ended_at[row] >= self.max_answer:
                self.stopped[row] = (n, "answer")
            done[row] = row in self.stopped
        return done


@torch.no_grad()
def generate_ids(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    alpha: float | torch.Tensor | None = None,
    fmt=None,
    max_answer_tokens: int = 0,
) -> list[Generated]:
    """``num_return_sequences`` chains per rendered prompt (prompt-major), in one left-padded batch.

    ``alpha`` scales the LoRA delta (:mod:`gan_cot.gate.scaling`): a float for every chain, a tensor [prompts]
    (repeated for each prompt's chains) or [prompts * num_return_sequences]. With a chain format ``fmt``
    (:mod:`gan_cot.formats`), ``max_new_tokens`` is a thinking budget: a chain whose thinking runs that long without
    the end-of-thinking marker gets ``fmt.forced_end`` and ``max_answer_tokens`` greedy tokens to answer (batched,
    each chain at its alpha); a chain that ends its thinking in time has ``max_answer_tokens`` for its answer.
    Without ``fmt``, ``max_new_tokens`` caps the whole chain. Greedy decoding samples each prompt once and repeats
    the chain. An end-of-sequence token that is also the pad token is found before padding is read.
    """
    model.eval()
    device = _device(model)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    g = num_return_sequences
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
    enc = enc.to(device)
    width = enc["input_ids"].shape[1]
    budget = None
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad, eos_token_id=eos)
    if fmt is not None:
        budget = ThinkingBudget(tokenizer, width, fmt.end_of_thinking, max_new_tokens, max_answer_tokens)
        kwargs.update(max_new_tokens=max_new_tokens + max_answer_tokens, stopping_criteria=[budget])
    reps = g if do_sample else 1
    if do_sample:
        kwargs.update(temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=g)
    first = alpha
    if not do_sample and isinstance(alpha, torch.Tensor) and len(alpha) != len(prompts):
        first = alpha[::g]  # greedy: one chain per prompt, at its first chain's alpha
    with _scaled(model, first):
        out = model.generate(**enc, **kwargs)
    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
    results: list[Generated] = []
    forced: list[int] = []
    for j, row in enumerate(out[:, width:].tolist()):
        length, reason = budget.stopped.get(j, (None, None)) if budget is not None else (None, None)
        ids, finished = cut_at_eos(row if length is None else row[:length], eos, pad)
        for _ in range(g // reps):
            if reason == "think":
                forced.append(len(results))
            results.append(Generated(prompt_ids[j // reps], ids, finished))
    if not forced:
        return results
    marker = tokenizer(fmt.forced_end, add_special_tokens=False)["input_ids"]
    for i in forced:
        r = results[i]
        results[i] = Generated(r.prompt_ids, r.completion_ids + marker, False, True)
    if max_answer_tokens <= 0:
        return results
    chain_alpha = alpha
    if isinstance(alpha, torch.Tensor):
        per_chain = alpha.repeat_interleave(g) if len(alpha) == len(prompts) else alpha
        chain_alpha = per_chain[torch.tensor(forced)]
    ids, att = _left_pad([results[i].prompt_ids + results[i].completion_ids for i in forced], pad, device)
    with _scaled(model, chain_alpha):
        answer = model.generate(
            input_ids=ids, attention_mask=att, do_sample=False, max_new_tokens=max_answer_tokens,
            pad_token_id=pad, eos_token_id=eos,
        )[:, ids.shape[1] :].tolist()  # fmt: skip
    for i, row in zip(forced, answer):
        extra, finished = cut_at_eos(row, eos, pad)
        r = results[i]
        results[i] = Generated(r.prompt_ids, r.completion_ids + extra, finished, True)
    return results


class HFEngine:
    """The rollout engine: Hugging Face ``generate`` on the training model itself (under ZeRO-3 the trainer
    gathers the parameters once around it). Another engine (a serving engine beside the trainer) implements the same
    two methods: ``sync`` before a round's sampling, ``sample`` for a batch of prompts."""

    name = "hf"

    def __init__(self, cfg=None):
        pass  # nothing to set up: the training model samples

    def sync(self, model, gate) -> None:
        """Make the current adapter (and gate) the one sampled from: nothing to do, the model is the policy."""

    def sample(self, model, tokenizer, prompts, group_size, temperature, alpha, fmt, budgets) -> list[Generated]:
        """``group_size`` sampled chains per rendered prompt; ``budgets``: (thinking, answer) tokens."""
        think, answer = budgets
        return generate_ids(model, tokenizer, prompts, think, group_size, True, temperature, alpha, fmt, answer)


def _vllm_engine(cfg):
    from gan_cot.vllm_engine import VLLMEngine  # vLLM is an optional extra: imported only when chosen

    return VLLMEngine(cfg)


ENGINES = {"hf": HFEngine, "vllm": _vllm_engine}  # rollout.engine -> a constructor taking the run's config


def completion(tokenizer, gen: Generated) -> Completion:
    """A generated chain as text (special tokens and the end-of-sequence token left out)."""
    body = gen.completion_ids[:-1] if gen.finished else gen.completion_ids
    return Completion(tokenizer.decode(body, skip_special_tokens=True), gen.num_tokens, gen.finished, gen.forced)


@dataclass(frozen=True)
class Sampling:
    """How :func:`generate` draws completions, the same for every question:

    - ``n``: completions per question (greedy decoding runs each question once and repeats its chain ``n`` times).
    - ``do_sample``: sample at ``temperature`` with top-k 0 and top-p 1; greedy decoding when False.
    - ``temperature``: the sampling temperature (not used by greedy decoding).
    - ``max_new_tokens``: the tokens a chain may generate; with ``fmt``, its thinking budget.
    - ``fmt``: a chain format (:mod:`gan_cot.formats`) or None: force the end of thinking after ``max_new_tokens``.
    - ``max_answer_tokens``: with ``fmt``, the greedy tokens a chain gets to answer after the end of its thinking.
    - ``batch_size``: questions per generation batch.
    """

    n: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    max_new_tokens: int = 256
    fmt: object = None
    max_answer_tokens: int = 0
    batch_size: int = 64

    def __post_init__(self):
        for name in ("n", "batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Sampling.{name} must be at least 1, got {value!r}")


@torch.no_grad()
def generate(
    model,
    tokenizer,
    questions: list[str],
    sampling: Sampling = Sampling(),
    *,
    alpha: float | None = None,
    prefixes: list[str] | None = None,
    progress=None,
    alphas_out: list | None = None,
) -> list[list[Completion]]:
    """``sampling.n`` completions per question, in batches of ``sampling.batch_size`` questions (:class:`Sampling`).

    ``model``: a causal LM or a :class:`gan_cot.gate.GatedPolicy` (each question at its gate's alpha, or at ``alpha``
    when given; the alpha used per question is appended to ``alphas_out``). ``sampling.fmt`` and
    ``sampling.max_answer_tokens``: the thinking budget of :func:`generate_ids`. ``prefixes`` (one per question) are
    chain text already written: generation continues after them, and the returned text and token counts cover the
    continuation only. ``progress``: an optional callable taking the number of questions just finished.
    """
    from gan_cot.gate.model import GatedPolicy

    if not isinstance(sampling, Sampling):
        raise TypeError(f"generate takes its decoding options as a Sampling, got {type(sampling).__name__}")
    if hasattr(model, "model_for"):  # a merged gated policy: each question on its alpha's merged weights
        return _generate_merged(model, tokenizer, questions, sampling, alphas_out, progress, prefixes=prefixes)
    gated_policy = isinstance(model, GatedPolicy)
    lm = model.peft_model if gated_policy else model
    if alpha is not None and not gated_policy:
        raise ValueError("a fixed alpha scales a LoRA delta: pass a GatedPolicy (an adapter loaded unmerged)")
    s = sampling
    batch_size = s.batch_size
    out: list[list[Completion]] = []
    for i in range(0, len(questions), batch_size):
        chunk = [render_prompt(tokenizer, q) for q in questions[i : i + batch_size]]
        if prefixes is not None:
            chunk = [p + pre for p, pre in zip(chunk, prefixes[i : i + batch_size])]
        a = None
        if gated_policy:
            if alpha is not None:
                a = torch.full((len(chunk),), float(alpha))
            else:
                enc = tokenizer(
                    chunk, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left"
                )
                a = model.alpha(enc["input_ids"].to(_device(lm)), enc["attention_mask"].to(_device(lm))).float().cpu()
            if alphas_out is not None:
                alphas_out += a.tolist()
        gens = generate_ids(
            lm, tokenizer, chunk, s.max_new_tokens, s.n, s.do_sample, s.temperature, a, s.fmt, s.max_answer_tokens
        )
        g = s.n
        out += [[completion(tokenizer, x) for x in gens[k : k + g]] for k in range(0, len(gens), g)]
        if progress is not None:
            progress(len(chunk))
    return out


def _generate_merged(policy, tokenizer, questions, sampling: Sampling, alphas_out, progress, prefixes=None):
    """:func:`generate` for a :class:`gan_cot.gate.merged.MergedGatedPolicy`: the gate picks every question's alpha,
    then each alpha's questions run in batches on that alpha's merged model; completions come back in order."""
    device = _device(policy)
    batch_size = sampling.batch_size
    alphas: list[float] = []
    for i in range(0, len(questions), batch_size):
        chunk = [render_prompt(tokenizer, q) for q in questions[i : i + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
        alphas += policy.alpha(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu().tolist()
    out: list = [None] * len(questions)
    for a in sorted(set(alphas)):
        idx = [i for i, x in enumerate(alphas) if x == a]
        pre = None if prefixes is None else [prefixes[i] for i in idx]
        groups = generate(
            policy.model_for(a), tokenizer, [questions[i] for i in idx], sampling, prefixes=pre, progress=progress
        )
        for i, group in zip(idx, groups):
            out[i] = group
    if alphas_out is not None:
        alphas_out += alphas
    return out
