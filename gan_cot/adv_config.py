"""Configuration of the adversarial trainer (``deepspeed scripts/train_adv.py --config ...``)."""

from __future__ import annotations

from dataclasses import dataclass

from gan_cot.config import ConfigError, field


@dataclass
class PolicyConfig:
    model: str = field("models/ledger-verbose-base", help="base causal LM (Hub id or folder) the adapter trains on")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA scaling numerator (scale = lora_alpha / lora_r)")
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="module names that get LoRA adapters",
    )
    lr: float = field(2e-3, help="adapter learning rate (SFT and policy updates share the optimizer)")
    lr_schedule: str = field(
        "constant",
        help="constant, or cosine: from round 0 to the last round the adapter's learning rates (policy.lr and "
        "sft.lr; the warm-up runs at the full rate) fall along a half cosine to lr_floor times their value",
    )
    lr_floor: float = field(0.05, help="the cosine schedule's last-round learning rate, as a fraction of the full one")

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"policy.lr_schedule: {self.lr_schedule!r}; choose constant or cosine")
        if not 0 <= self.lr_floor <= 1:
            raise ConfigError(f"policy.lr_floor must be in [0, 1], got {self.lr_floor}")


@dataclass
class RolloutConfig:
    questions: int = field(32, help="questions per round (split across processes)")
    group_size: int = field(4, help="G: chains sampled per question; credit is normalised within the group")
    temperature: float = field(1.0, help="sampling temperature")
    max_think_tokens: int = field(160, help="thinking budget: past it, the end of thinking is forced")
    max_answer_tokens: int = field(8, help="tokens allowed after the end of thinking")
    end_of_thinking: str = field("\n####", help="text that ends the thinking part (forced when the budget runs out)")
    batch_size: int = field(64, help="generation batch size")


@dataclass
class CreditConfig:
    mode: str = field("discriminator", help="discriminator: step credit + correctness; length: ablation without steps")
    useful: float = field(0.2, help="credit weight of a useful step")
    redundant: float = field(-1.0, help="credit weight of a redundant step")
    wrong: float = field(-1.0, help="credit weight of a wrong step")
    step_coef: float = field(0.5, help="scale of the step term against the group-normalised sequence term")
    length_penalty: float = field(0.5, help="length mode: reward = correct - length_penalty * len / mean group len")

    def __post_init__(self):
        if self.mode not in ("discriminator", "length"):
            raise ConfigError(f"credit.mode: {self.mode!r} is not allowed; choose discriminator or length")


@dataclass
class LossConfig:
    clip_eps: float = field(0.2, help="PPO clip range")
    kl_coef: float = field(0.02, help="weight of KL(policy || reference), the base without the adapter")
    epochs: int = field(2, help="passes over each round's samples")
    micro_batch: int = field(32, help="sequences per forward/backward")


@dataclass
class SFTConfig:
    steps: int = field(8, help="SFT steps per round (0 disables the phase)")
    batch_size: int = field(32, help="sequences per SFT step")
    source: str = field(
        "shortest_correct",
        help="shortest_correct (shortest correct chain sampled so far), pruned (the same with the discriminator's "
        "redundant/wrong steps cut; needs a pool of thousands, pool_questions: a few dozen get memorised), reference "
        "(the task's chains), or minimal (the task's minimal chains)",
    )
    pool_questions: int = field(
        0,
        help="before round 0, sample pool_samples chains for this many training questions and keep each one's "
        "shortest correct (pruned) chain, so SFT sees a pool this large instead of one round's questions",
    )
    prune_threshold: float | None = field(
        None,
        help="sft.source: pruned keeps a step when the discriminator's p(useful) is at least this (null: when useful "
        "is its most likely label); above 0.5 it trades a few steps cut by mistake for fewer redundant ones kept",
    )
    pool_samples: int = field(1, help="chains sampled per pool question (pool_questions, pool_source: samples)")
    pool_source: str = field(
        "samples",
        help="where the pool's chains come from: samples (the policy samples pool_samples chains per question) or "
        "reference (the task's own reference chains, e.g. long chains distilled from a stronger model: no "
        "generation, so the pool can hold tens of thousands); either way sft.source: pruned cuts the steps the "
        "discriminator judges redundant or wrong",
    )
    warmup_steps: int = field(0, help="SFT steps on the pool before round 0 (after pool_questions fills it)")
    lr: float | None = field(None, help="SFT learning rate (null: policy.lr)")
    pool_temperature: float | None = field(
        None,
        help="sampling temperature of the pool's chains (null: rollout.temperature); a cooler pool has fewer odd "
        "steps for the discriminator to misjudge",
    )
    pool_frozen: bool = field(
        False,
        help="keep the warm-start pool as it is: the rounds' chains never replace a question's target (a shorter "
        "correct chain from the policy can skip a step and do it silently); false: the shortest so far wins",
    )

    def __post_init__(self):
        if self.pool_temperature is not None and not self.pool_temperature > 0:
            raise ConfigError(f"sft.pool_temperature must be > 0 (or null), got {self.pool_temperature}")
        if self.pool_frozen and self.pool_questions <= 0:
            raise ConfigError("sft.pool_frozen needs a pool: set sft.pool_questions > 0 (or sft.pool_frozen=false)")
        if self.source not in ("pruned", "shortest_correct", "reference", "minimal"):
            raise ConfigError(f"sft.source: {self.source!r}; choose pruned, shortest_correct, reference or minimal")
        if self.prune_threshold is not None and not 0 < self.prune_threshold < 1:
            raise ConfigError(f"sft.prune_threshold must be in (0, 1) (or null), got {self.prune_threshold}")
        if self.pool_source not in ("samples", "reference"):
            raise ConfigError(f"sft.pool_source: {self.pool_source!r}; choose samples or reference")
        if self.pool_samples <= 0:
            raise ConfigError(f"sft.pool_samples must be positive, got {self.pool_samples}")
        for key in ("pool_questions", "warmup_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"sft.{key} must be 0 or more, got {getattr(self, key)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"sft.lr must be positive (or null for policy.lr), got {self.lr}")


@dataclass
class DiscriminatorRunConfig:
    name: str = field("ledger-tiny", help="registry name, folder, archive URL or Hub id of the discriminator")
    mode: str = field("adversarial", help="adversarial: refresh on new samples each round; frozen: plug and play")
    refresh_steps: int = field(4, help="discriminator steps per round in adversarial mode")
    labels: str = field("gold", help="labels for the refresh: gold (task oracle, ledger) or auto (rollouts)")
    lr: float = field(5e-4, help="discriminator learning rate")

    def __post_init__(self):
        if self.mode not in ("adversarial", "frozen"):
            raise ConfigError(f"discriminator.mode: {self.mode!r}; choose adversarial or frozen")
        if self.labels not in ("gold", "auto"):
            raise ConfigError(f"discriminator.labels: {self.labels!r}; choose gold or auto")


@dataclass
class EvalConfig:
    n: int = field(500, help="test questions for the base and final evaluation")
    every: int = field(0, help="evaluate on `round_n` validation questions every N rounds (0: only at the end)")
    round_n: int = field(100, help="validation questions for the per-round evaluation")


@dataclass
class GateConfig:
    enabled: bool = field(
        False,
        help="learn a per-question alpha gate: the LoRA delta is scaled by alpha = gate(prompt features) in rollouts, "
        "updates and evaluation; the gate is saved beside the adapter (alpha_gate.safetensors)",
    )
    alpha: float | None = field(
        None,
        help="fixed CoT-Valve alpha instead of a gate: W + alpha * delta at training and inference (the saved adapter "
        "holds alpha * delta); null: no fixed alpha",
    )
    alpha_max: float = field(2.0, help="the gate's alpha lies in [0, alpha_max]; must be > 1 (it starts at 1.0)")
    pooling: str = field("mean", help="prompt features for the gate: mean over prompt tokens or the last one")
    hidden: int = field(64, help="width of the gate's hidden layer")
    length_coef: float = field(
        1.0,
        help="length cost (gate on only): each chain's sequence advantage loses length_coef * (tokens / mean tokens "
        "of its group - 1), centred and not std-normalised; 0: the gate learns from the token credit alone",
    )
    lr: float = field(1e-2, help="gate learning rate (its own optimizer parameter group)")
    mode: str = field(
        "pathwise",
        help="how the gate learns: pathwise (the PPO loss back-propagates through alpha) or reinforce (each chain "
        "samples its own alpha around the gate's, and the gate learns which alpha won its group; the LoRA trains "
        "at the sampled alpha)",
    )
    sigma: float = field(1.0, help="reinforce mode: exploration noise on the gate's logit (alpha_max * sigmoid(.))")
    choices: list[float] | None = field(
        None,
        help="reinforce mode: [low, high], the gate picks one of two alphas per question (a Bernoulli on its logit; "
        "the likelier one at evaluation) instead of a continuous alpha; e.g. [0.0, 1.0]: the base or the delta",
    )
    sft_alpha: float | None = field(
        None,
        help="alpha of the SFT steps (warm-up included): null, the gate's alpha for each prompt; a number, the "
        "delta learns the short chains at that alpha and the gate chooses how much of it each question gets",
    )

    def __post_init__(self):
        if self.mode not in ("pathwise", "reinforce"):
            raise ConfigError(f"gate.mode: {self.mode!r} is not allowed; choose pathwise or reinforce")
        if not self.sigma > 0:
            raise ConfigError(f"gate.sigma must be > 0, got {self.sigma}")
        if self.choices is not None:
            if len(self.choices) != 2 or not 0 <= self.choices[0] < self.choices[1]:
                raise ConfigError(f"gate.choices must be [low, high] with 0 <= low < high, got {self.choices}")
            if self.mode != "reinforce":
                raise ConfigError("gate.choices needs gate.mode=reinforce (a choice has no gradient through alpha)")
        if self.sft_alpha is not None and not self.sft_alpha >= 0:
            raise ConfigError(f"gate.sft_alpha must be >= 0 (or null), got {self.sft_alpha}")
        if self.pooling not in ("mean", "last"):
            raise ConfigError(f"gate.pooling: {self.pooling!r} is not allowed; choose mean or last")
        if not self.alpha_max > 1.0:
            raise ConfigError(f"gate.alpha_max must be > 1 (the gate starts at alpha = 1), got {self.alpha_max}")
        if not self.length_coef >= 0:
            raise ConfigError(f"gate.length_coef must be >= 0, got {self.length_coef}")
        if self.hidden <= 0:
            raise ConfigError(f"gate.hidden must be positive, got {self.hidden}")
        if not self.lr > 0:
            raise ConfigError(f"gate.lr must be positive, got {self.lr}")
        if self.alpha is not None:
            if not self.alpha >= 0:
                raise ConfigError(f"gate.alpha must be >= 0 (or null), got {self.alpha}")
            if self.enabled:
                raise ConfigError(
                    "gate.alpha: a fixed alpha replaces the learned gate; set gate.enabled=false or gate.alpha=null"
                )


@dataclass
class AdvConfig:
    task: str = field("ledger", help="task: ledger or gsm8k")
    data: str | None = field(None, help="data path for file-backed tasks")
    seed: int = field(0, help="seed for data, sampling and initialisation")
    rounds: int = field(20, help="rounds of the loop")
    output_dir: str = field("outputs/adv/default", help="run folder: checkpoints, final adapter, result.json")
    deepspeed: str = field("configs/deepspeed/zero0.json", help="DeepSpeed config (ZeRO stage, offload)")
    checkpoint_every: int = field(5, help="checkpoint every N rounds (0: only at the end)")
    experiment: str = field("gan-cot", help="MLflow experiment")
    mlflow_dir: str | None = field(None, help="local MLflow store folder (default mlruns/; MLFLOW_TRACKING_URI wins)")
    max_nan_steps: int = field(3, help="stop (with a checkpoint) after this many non-finite losses in a row")
    policy: PolicyConfig = field(default_factory=PolicyConfig, help="policy and adapter")
    rollout: RolloutConfig = field(default_factory=RolloutConfig, help="sampling and budgets")
    credit: CreditConfig = field(default_factory=CreditConfig, help="per-token credit")
    loss: LossConfig = field(default_factory=LossConfig, help="policy loss")
    sft: SFTConfig = field(default_factory=SFTConfig, help="SFT phase")
    discriminator: DiscriminatorRunConfig = field(default_factory=DiscriminatorRunConfig, help="discriminator")
    eval: EvalConfig = field(default_factory=EvalConfig, help="evaluation")
    gate: GateConfig = field(default_factory=GateConfig, help="alpha gate (per-question LoRA scale) or a fixed alpha")

    def __post_init__(self):
        for key, value in (("rounds", self.rounds), ("rollout.questions", self.rollout.questions),
                           ("rollout.group_size", self.rollout.group_size), ("rollout.batch_size", self.rollout.batch_size),
                           ("rollout.max_think_tokens", self.rollout.max_think_tokens),
                           ("loss.micro_batch", self.loss.micro_batch), ("loss.epochs", self.loss.epochs),
                           ("sft.batch_size", self.sft.batch_size), ("eval.n", self.eval.n),
                           ("max_nan_steps", self.max_nan_steps)):  # fmt: skip
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        for key, value in (("checkpoint_every", self.checkpoint_every), ("eval.every", self.eval.every),
                           ("sft.steps", self.sft.steps), ("discriminator.refresh_steps", self.discriminator.refresh_steps),
                           ("rollout.max_answer_tokens", self.rollout.max_answer_tokens)):  # fmt: skip
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
        if self.eval.every and self.eval.round_n <= 0:
            raise ConfigError(f"eval.round_n must be positive when eval.every is set, got {self.eval.round_n}")
        if self.rollout.group_size < 2:
            raise ConfigError("rollout.group_size must be at least 2: credit is normalised within the group")
