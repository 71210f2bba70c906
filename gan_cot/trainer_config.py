"""Configuration of the adversarial trainer (``deepspeed scripts/train_adv.py --config ...``).

The defaults are the recipe to start from: a warm start on a pool of the task's reference chains pruned by the
discriminator, rounds of SFT + discriminator-weighted policy updates at a cosine learning rate, the discriminator
refreshed with automatic labels, and the learned alpha gate choosing the base or the full delta per question. A
YAML file states only what differs (``configs/default.yaml``: the built-in task's model, sizes and discriminator).
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from typing import Literal

from gan_cot.config_loader import ConfigError, check_bounds, field
from gan_cot.run_config import RunConfig


@dataclass
class PolicyConfig:
    lr: float = field(1e-4, help="adapter learning rate (SFT and policy updates share the optimizer)")
    lr_schedule: Literal["constant", "cosine"] = field(
        "cosine",
        help="constant, or cosine: from round 0 to the last round the adapter's learning rates (policy.lr and "
        "sft.lr; the warm-up runs at the full rate) fall along a half cosine to lr_floor times their value",
    )
    lr_floor: float = field(0.05, help="the cosine schedule's last-round learning rate, as a fraction of the full one")
    dtype: Literal["auto", "float32", "bfloat16"] = field(
        "auto",
        help="weights and compute: bfloat16 (DeepSpeed bf16 on) or float32; auto: bfloat16 on GPUs, else float32",
    )
    gradient_checkpointing: bool = field(
        False, help="recompute each layer's activations in backward: far less memory for long chains, ~30% slower"
    )

    def __post_init__(self):
        check_bounds(self, "policy", positive=("lr",))
        if not 0 <= self.lr_floor <= 1:
            raise ConfigError(f"policy.lr_floor must be in [0, 1], got {self.lr_floor}")


@dataclass
class RolloutConfig:
    questions: int = field(32, help="questions per round (split across processes)")
    group_size: int = field(4, help="G: chains sampled per question; credit is normalised within the group")
    temperature: float = field(1.0, help="sampling temperature")
    max_think_tokens: int = field(160, help="thinking budget: past it, the end of thinking is forced")
    max_answer_tokens: int | None = field(
        None,
        help="answer budget: tokens allowed after the end of thinking (null: the chain format's, 8 for hash and 32 "
        "for r1, whose 'The answer is $\\boxed{X}$.' is 11+ tokens in a real tokenizer)",
    )
    batch_size: int = field(64, help="generation batch size (chains)")
    engine: Literal["hf", "vllm"] = field(
        "hf",
        help="rollout engine: hf (Hugging Face generate on the training model) or vllm (a vLLM engine in each training "
        "process: the base loaded once, the adapter sent each round as one pre-scaled LoRA per alpha of the gate; "
        "pip install 'gan-cot[vllm]')",
    )
    vllm_gpu_memory: float = field(
        0.3,
        help="vllm: the share of each GPU's memory vLLM takes (base weights and KV cache); training keeps the rest",
    )
    vllm_eager: bool = field(False, help="vllm: no CUDA graphs or compilation (starts faster, samples slower)")
    vllm_max_model_len: int | None = field(
        None,
        help="vllm: the longest prompt + chain it holds (null: the model's maximum); lower it to fit the KV cache",
    )
    vllm_adapter_dir: str | None = field(
        None,
        help="vllm: folder for each round's pre-scaled adapters, one subfolder per process (null: "
        "output_dir/vllm-adapters; a tmpfs such as /dev/shm/NAME saves the disk writes)",
    )

    def __post_init__(self):
        check_bounds(
            self, "rollout", ("questions", "batch_size", "max_think_tokens", "temperature", "vllm_max_model_len"),
            ("max_answer_tokens",),
        )  # fmt: skip
        if not 0 < self.vllm_gpu_memory <= 1:
            raise ConfigError(f"rollout.vllm_gpu_memory must be in (0, 1], got {self.vllm_gpu_memory}")
        if self.engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "rollout.engine=vllm needs vLLM, which is not installed: pip install 'gan-cot[vllm]' (see the "
                "README's GPU section), or rollout.engine=hf"
            )
        if self.group_size < 2:
            raise ConfigError("rollout.group_size must be at least 2: credit is normalised within the group")


@dataclass
class CreditConfig:
    mode: Literal["discriminator", "length"] = field(
        "discriminator", help="discriminator: step credit + correctness; length: the ablation without step credit"
    )
    useful: float = field(0.2, help="credit weight of a useful step")
    redundant: float = field(-1.0, help="credit weight of a redundant step")
    wrong: float = field(-1.0, help="credit weight of a wrong step")
    step_coef: float = field(0.5, help="scale of the step term against the group-normalised sequence term")
    length_penalty: float = field(0.5, help="length mode: reward = correct - length_penalty * len / mean group len")


@dataclass
class LossConfig:
    clip_eps: float = field(0.2, help="PPO clip range")
    kl_coef: float = field(
        0.0, help="weight of KL(policy || reference), the base without the adapter (0: the warm start leaves it)"
    )
    epochs: int = field(2, help="passes over each round's samples")
    micro_batch: int = field(32, help="sequences per forward/backward")
    logprob_chunk: int = field(
        1024, help="positions per chunk of the log-softmax over the vocabulary (recomputed in backward, not stored)"
    )

    def __post_init__(self):
        check_bounds(self, "loss", positive=("epochs", "micro_batch", "logprob_chunk"))


@dataclass
class SFTConfig:
    steps: int = field(8, help="SFT steps on the pool per round (0 disables the phase)")
    batch_size: int = field(32, help="sequences per SFT step")
    source: Literal["pruned", "shortest_correct", "reference", "minimal"] = field(
        "pruned",
        help="pruned (each question's shortest correct chain so far with the discriminator's redundant and wrong "
        "steps cut), shortest_correct (the same, not cut), reference (the task's chains), or minimal (the task's "
        "minimal chains)",
    )
    pool_source: Literal["reference", "samples"] = field(
        "reference",
        help="where the warm-start pool's chains come from: reference (the task's own reference chains, e.g. long "
        "chains distilled from a stronger model: no generation, so the pool can hold tens of thousands) or samples "
        "(the policy samples pool_samples chains per question); either way sft.source: pruned cuts the steps the "
        "discriminator judges redundant or wrong",
    )
    pool_questions: int = field(
        2048,
        help="training questions in the warm-start pool: a few hundred pruned targets get memorised, thousands do not",
    )
    pool_samples: int = field(1, help="chains sampled per pool question (pool_source: samples)")
    pool_temperature: float | None = field(
        None, help="sampling temperature of a sampled pool (null: rollout.temperature)"
    )
    prune_by: Literal["policy", "discriminator"] = field(
        "policy",
        help="sft.source: pruned, the warm-start pool's reference chains: policy (a step is cut only when the policy "
        "still answers without it, the labels of discriminator.labels=policy with its label_* thresholds) or "
        "discriminator (p(useful) below prune_threshold); the rounds' own chains are pruned by the discriminator, "
        "which learns the policy's labels",
    )
    prune_threshold: float | None = field(
        0.8,
        help="sft.source: pruned keeps a step when the discriminator's p(useful) is at least this (null: when useful "
        "is its most likely label); above 0.5 it trades a few steps cut by mistake for fewer redundant ones kept",
    )
    warmup_steps: int = field(800, help="SFT steps on the pool before round 0")
    warmup_schedule: Literal["constant", "cosine"] = field(
        "constant",
        help="the warm start's learning rate: constant (sft.lr throughout), or cosine (a linear ramp over the first "
        "tenth of warmup_steps, at most 50, then a half cosine down to policy.lr_floor times sft.lr at the last step, "
        "as scripts/oracle.py trains its LoRAs)",
    )
    lr: float | None = field(None, help="SFT learning rate (null: policy.lr)")
    backoff: bool = field(
        False,
        help="after the warm start on policy-pruned targets, its held-out check per drop (gan_cot/backoff.py): the "
        "warm-started policy answers backoff_questions validation questions; a drop whose nearest left-out steps "
        "(in the policy's hidden states) come from wrong chains more often than the held-out chains do is taken "
        "back, and the warm start runs again from the initial adapter",
    )
    backoff_questions: int = field(500, help="sft.backoff: validation questions the warm-started policy answers")
    backoff_neighbours: int = field(20, help="sft.backoff: left-out steps nearest to a drop that decide it")
    backoff_z: float = field(
        3.0,
        help="sft.backoff: standard errors above the held-out chains' wrong fraction that a drop's neighbours must be "
        "wrong to take it back",
    )
    pool_frozen: bool = field(
        False,
        help="keep the warm-start pool as it is: the rounds' chains never replace a question's target (a shorter "
        "correct chain from the policy can skip a step and do it silently); false: the shortest so far wins",
    )

    def __post_init__(self):
        check_bounds(
            self,
            "sft",
            ("batch_size", "pool_samples", "pool_temperature", "lr", "backoff_questions", "backoff_neighbours"),
            ("steps", "pool_questions", "warmup_steps", "backoff_z"),
        )
        if self.pool_frozen and self.pool_questions <= 0:
            raise ConfigError("sft.pool_frozen needs a pool: set sft.pool_questions > 0 (or sft.pool_frozen=false)")
        if self.prune_threshold is not None and not 0 < self.prune_threshold < 1:
            raise ConfigError(f"sft.prune_threshold must be in (0, 1) (or null), got {self.prune_threshold}")


@dataclass
class DiscriminatorRunConfig:
    name: str = field("ledger-tiny", help="registry name, folder, archive URL or Hub id of the discriminator")
    mode: Literal["adversarial", "frozen"] = field(
        "adversarial", help="adversarial: refresh on new samples each round; frozen: plug and play"
    )
    refresh_steps: int = field(4, help="discriminator steps per round in adversarial mode")
    labels: Literal["policy", "auto", "gold"] = field(
        "policy",
        help="labels for the refresh: policy (a step is redundant only if the current policy still answers without "
        "it: the rest of its chain does not lean on the step; gan_cot/discriminator/policy_labels.py), auto (rollouts "
        "of each prefix) or gold (the task's oracle, an ablation)",
    )
    label_lean: float = field(
        0.1,
        help="policy labels: a step is useful when the policy's NLL per token of the rest of the chain (later steps "
        "and answer) rises by more than this many nats without it",
    )
    label_stop: float = field(
        2.0,
        help="policy labels: ... or when the end-of-thinking marker's NLL rises by more than this many nats without "
        "it (the policy needs the step to know it is done)",
    )
    label_lean_next: float | None = field(
        None,
        help="policy labels: ... or when the next step's NLL per token rises by more than this many nats without it "
        "(a step only the next one uses; null: off). 0.25 meets every kind's target on ledger-hard, whose config sets it "
        "(docs/results.md)",
    )
    label_confirm: bool = field(
        False,
        help="policy labels: confirm every drop by letting the policy continue the pruned chain past it (greedy, "
        "the rollout's budgets); a drop is taken back when that continuation misses the answer and the same one with "
        "the step in place reaches it. Two continuations per dropped step (gan_cot/discriminator/policy_labels.py)",
    )
    label_wrong: float = field(
        0.1,
        help="policy labels: a step is wrong when the answer's log-prob per token rises by more than this without it",
    )
    warmup_steps: int = field(
        100,
        help="policy labels: discriminator steps on the warm-start pool's labels before round 0, so the step credit "
        "of the first rounds already scores what this policy needs (0: none)",
    )
    lr: float = field(5e-4, help="discriminator learning rate")
    label_chains: int = field(
        16,
        help="policy and auto labels: chains of each round labelled (a random subset; 0: all). The cost per round is "
        "label_chains x (steps + 1) forward passes (policy) or x label_rollouts continuations of up to the rollout's "
        "budgets (auto)",
    )
    label_rollouts: int = field(4, help="auto labels: continuations sampled from every prefix of a labelled chain")

    label_map: dict[str, str] | None = field(
        None,
        help="model label -> useful / redundant / wrong, e.g. {LABEL_0: wrong, LABEL_1: useful} for a two-way PRM "
        "(null: the checkpoint's card or registry entry)",
    )
    layout: Literal["auto", "gan_cot", "trl_prm", "step_tag", "qwen_prm"] = field(
        "auto",
        help="how the checkpoint scores steps: auto (its card, registry entry or config.json), gan_cot, trl_prm "
        "(TRL PRMTrainer token classification), step_tag (a causal LM scored by good/bad tokens at a step tag, "
        "Math-Shepherd), qwen_prm (Qwen2.5-Math-PRM)",
    )
    step_tag: dict[str, str] | None = field(
        None, help="step_tag layout: {tag: ки, good: +, bad: -} (null: the registry entry's)"
    )
    separator: str | None = field(None, help="how the discriminator joins steps (null: its card's)")
    max_length: int | None = field(
        None, help="positions per scoring window of the discriminator (null: its card's, else the backbone's maximum)"
    )
    redundancy: Literal["none", "probe", "head"] | None = field(
        None,
        help="where a two-way scorer's redundant comes from: none, probe (a step that does not raise the policy's "
        "probability of the right answer) or head (redundancy_head's three-way scores); null: the card's (none)",
    )
    redundancy_head: str | None = field(None, help="redundancy=head: a three-way discriminator, e.g. gsm8k-minilm")
    sha256: str | None = field(None, help="sha256 of the archive when name is an archive URL not in the registry")
    checks: list[str] | None = field(
        None,
        help="rule checks next to the model: arithmetic (a step with a false equation is wrong), repeat (a step "
        "that repeats an earlier one is redundant), [] for none; null: the card's",
    )
    device: str = field("auto", help="device of the discriminator: auto (the policy's), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        "auto", help="weights' dtype: auto (float32 on a CPU, bfloat16 on a GPU)"
    )

    def __post_init__(self):
        check_bounds(self, "discriminator", ("lr", "label_rollouts", "max_length"), ("refresh_steps", "label_chains"))
        bad = sorted(set((self.label_map or {}).values()) - {"useful", "redundant", "wrong"})
        if bad:
            raise ConfigError(f"discriminator.label_map maps to {bad}; the classes are useful, redundant and wrong")
        if (self.redundancy == "head") != bool(self.redundancy_head):
            raise ConfigError(
                "discriminator.redundancy=head and discriminator.redundancy_head=NAME go together (the head is a "
                "three-way discriminator whose redundant scores a two-way PRM uses)"
            )
        if self.step_tag is not None and sorted(self.step_tag) != ["bad", "good", "tag"]:
            raise ConfigError(f"discriminator.step_tag needs the keys tag, good and bad, got {sorted(self.step_tag)}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"discriminator.device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")


@dataclass
class GateConfig:
    kind: Literal["learned", "fixed", "none"] = field(
        "learned",
        help="learned: a gate picks one alpha of `choices` per question (W + alpha * delta); fixed: CoT-Valve's "
        "constant `alpha` for every question; none: the plain adapter (alpha 1)",
    )
    choices: list[float] = field(
        default_factory=lambda: [0.0, 1.0],
        help="learned: the grid of alphas the gate chooses among, ascending; [0, 1] is the base or the full delta",
    )
    alpha: float | None = field(None, help="fixed: the alpha (the saved adapter holds alpha * delta)")
    sft_alpha: float = field(1.0, help="learned: alpha of the SFT steps (the delta learns the short chains at it)")
    length_coef: float = field(
        1.0,
        help="learned: each chain's sequence advantage loses length_coef * (tokens / mean tokens of its group - 1), "
        "centred and not std-normalised; 0: the gate learns from correctness alone",
    )
    select: list[float] = field(
        default_factory=list,
        help="learned or none: after the last round, the policy as trained against each of these fixed alphas on the "
        "guard's validation questions (guard.n); the most accurate, then the shortest, answers from then on (the "
        "policy as trained on a tie); []: the policy as trained",
    )
    lr: float = field(1e-2, help="learned: gate learning rate (its own optimizer parameter group)")
    hidden: int = field(64, help="learned: width of the gate's hidden layer")
    pooling: Literal["mean", "last"] = field(
        "mean", help="learned: prompt features, the base model's hidden state pooled over the prompt or its last token"
    )

    def __post_init__(self):
        if self.kind == "fixed" and (self.alpha is None or not self.alpha >= 0):
            raise ConfigError(f"gate.kind=fixed needs gate.alpha >= 0, got {self.alpha}")
        if self.kind != "fixed" and self.alpha is not None:
            raise ConfigError(f"gate.alpha is for gate.kind=fixed (got gate.kind={self.kind}); set gate.alpha=null")
        if self.kind == "learned":
            c = self.choices
            if len(c) < 2 or any(a < 0 for a in c) or any(b <= a for a, b in zip(c, c[1:])):
                raise ConfigError(f"gate.choices must be two or more alphas >= 0 in ascending order, got {c}")
        if self.select and self.kind == "fixed":
            raise ConfigError("gate.select is for gate.kind=learned or none (fixed has its alpha); set gate.select=[]")
        if any(not (a >= 0 and math.isfinite(a)) for a in self.select):
            raise ConfigError(f"gate.select must be alphas >= 0, got {self.select}")
        check_bounds(self, "gate", ("hidden", "lr"), ("sft_alpha", "length_coef"))


@dataclass
class GuardConfig:
    margin: float | None = field(
        0.04,
        help="no run ends worse than its base: when the validation accuracy falls more than this below the base's, "
        "the warm start backs off its pruning (unpruned targets, from the initial adapter) and a round is rolled back "
        "to the last state that passed (null: no guard)",
    )
    n: int = field(200, help="validation questions of each guard check (the base is measured on the same ones)")
    every: int = field(0, help="a guard check every N rounds (0: after the warm start and at the end only)")

    def __post_init__(self):
        check_bounds(self, "guard", ("n",), ("every", "margin"))


@dataclass
class AdversarialConfig(RunConfig):
    output_dir: str = field("outputs/adv/default", help="run folder: checkpoints, final adapter, result.json")
    rounds: int = field(20, help="rounds of the loop")
    deepspeed: str = field("configs/deepspeed/zero0.json", help="DeepSpeed config (ZeRO stage, offload)")
    checkpoint_every: int = field(5, help="checkpoint every N rounds (0: only at the end)")
    max_nan_steps: int = field(3, help="stop (with a checkpoint) after this many non-finite losses in a row")
    policy: PolicyConfig = field(default_factory=PolicyConfig, help="the adapter's optimisation")
    rollout: RolloutConfig = field(default_factory=RolloutConfig, help="sampling and budgets")
    credit: CreditConfig = field(default_factory=CreditConfig, help="per-token credit")
    loss: LossConfig = field(default_factory=LossConfig, help="policy loss")
    sft: SFTConfig = field(default_factory=SFTConfig, help="the SFT pool, its warm start and the rounds' SFT")
    discriminator: DiscriminatorRunConfig = field(default_factory=DiscriminatorRunConfig, help="discriminator")
    gate: GateConfig = field(default_factory=GateConfig, help="alpha gate: learned, fixed (CoT-Valve) or none")
    guard: GuardConfig = field(default_factory=GuardConfig, help="the base-accuracy guard")

    def __post_init__(self):
        check_bounds(self, "", ("rounds", "max_nan_steps"), ("checkpoint_every",))
        if self.rollout.max_answer_tokens is None:  # the format's budget, resolved so the logged config holds it
            from gan_cot.formats import get_format

            self.rollout.max_answer_tokens = get_format(self.format).answer_tokens

    @property
    def eval_budgets(self) -> tuple[int, int]:
        """(thinking, answer) token budgets of an evaluated chain: ``eval``'s, else the rollout's."""
        ev, ro = self.eval, self.rollout
        return (
            ev.max_think_tokens or ro.max_think_tokens,
            ro.max_answer_tokens if ev.max_answer_tokens is None else ev.max_answer_tokens,
        )
