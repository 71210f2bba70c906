"""Benchmark: the adversarial trainer against TRL's GRPOTrainer, side by side on one model, in one command
(see :mod:`gan_cot_lab.bench` for what each figure measures).

    python scripts/bench.py                                   # the shipped base, the defaults below (2 CPUs)
    python scripts/bench.py --json --seed 0 --steps 3 --group-size 4 --questions 32 --max-rollouts 1920
    python scripts/bench.py --tiny --questions 2 --group-size 2 --max-rollouts 8 --val-n 4    # seconds, for tests
    .venv-vllm/bin/python scripts/bench.py --engines-only     # rollout tokens/s: vLLM against HF generate (make vllm-env)
    python scripts/bench.py --generation-adapter outputs/adv/default/adapter --json   # gated inference at merged speed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gan_cot.usage import UsageError, fail, print_json


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout (progress on stderr)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling, initialisation and data")
    p.add_argument("--steps", type=int, default=3, help="timed policy updates per side, after one warm-up each")
    p.add_argument("--group-size", type=int, default=4, help="G: chains sampled per question")
    p.add_argument("--questions", type=int, default=32, help="Q: questions per round (N = Q x G chains)")
    p.add_argument("--max-rollouts", type=int, default=1920, help="stop each trainer after this many chains")
    p.add_argument("--val-n", type=int, default=64, help="validation questions for the target check and timing")
    p.add_argument("--target", type=float, default=1.2, help="tokens_vs_minimal to reach (accuracy >= the base's)")
    p.add_argument("--model", default=None, help="base policy (default: models/ledger-verbose-base)")
    p.add_argument("--discriminator", default=None, help="discriminator for ours (default: the config's)")
    p.add_argument("--tiny", action="store_true", help="a tiny untrained policy and discriminator built here")
    p.add_argument("--max-think-tokens", type=int, default=None, help="thinking budget (default: the config's)")
    p.add_argument("--max-answer-tokens", type=int, default=None, help="answer budget (default: the config's)")
    p.add_argument("--gen-batch", type=int, default=8, help="batch size of the generation-time measurement")
    p.add_argument("--gen-repeats", type=int, default=2, help="alternating timed generation runs per model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--engines-only", action="store_true",
        help="only the rollout engines' tokens/s: vLLM against HF generate, gated against merged (needs vLLM)",
    )  # fmt: skip
    p.add_argument("--generation-adapter", default=None, metavar="ADAPTER",
                   help="only the greedy generation time of this trained adapter (a gated one on merged copies per "
                   "alpha, and on LoRA layers beside it) against the base")  # fmt: skip
    p.add_argument("--workdir", default=None, help="folder for adapters and TRL output (default: a temporary one)")
    args = p.parse_args(argv)
    for name in ("steps", "group_size", "questions", "max_rollouts", "val_n", "gen_batch", "gen_repeats"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.group_size < 2:
        p.error("--group-size must be at least 2: both trainers normalise within the group")
    if args.max_rollouts < args.questions * args.group_size:
        p.error(
            f"--max-rollouts ({args.max_rollouts}) is below one round of Q x G = {args.questions * args.group_size}"
        )
    if args.generation_adapter and not (Path(args.generation_adapter) / "adapter_config.json").exists():
        p.error(
            f"--generation-adapter {args.generation_adapter}: no adapter_config.json there (a trained adapter folder)"
        )
    if args.tiny and args.model:
        p.error("--tiny builds its own policy; leave out --model")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from gan_cot_lab.bench import run, table

    try:
        result = run(args, log)
    except UsageError as e:
        fail(str(e))
    if not args.json:
        print(table(result), flush=True)
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
