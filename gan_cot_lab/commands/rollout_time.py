"""Time a round's rollout under a DeepSpeed config, with the parameters gathered once around generation (and
ZeRO-3's per-module hooks off) and without (ZeRO-3 then fetches every module's parameters at every token).

    python scripts/rollout_time.py --deepspeed configs/deepspeed/zero3.json --json
    python scripts/rollout_time.py --deepspeed configs/deepspeed/zero2.json --repeats 3 --json

A tiny policy and discriminator are built in a temporary folder; the run is configs/tiny.yaml with the rollout's
questions, group size and budget given here. Each repetition samples the same questions with the same seed, gathered
and not gathered alternately. The last line is one JSON object: seconds per rollout (best of ``--repeats``) for both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import print_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deepspeed", default=str(REPO_ROOT / "configs/deepspeed/zero3.json"), help="DeepSpeed config")
    p.add_argument("--questions", type=int, default=8, help="questions of the rollout")
    p.add_argument("--group-size", type=int, default=4, help="chains per question")
    p.add_argument("--max-think-tokens", type=int, default=48, help="thinking budget")
    p.add_argument("--repeats", type=int, default=3, help="timed rollouts per variant (best is reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)

    import torch

    from gan_cot.config_loader import load_config
    from gan_cot.trainer import AdversarialTrainer
    from gan_cot.trainer_config import AdversarialConfig
    from gan_cot_lab.reliability.tiny import build_tiny_pair

    with tempfile.TemporaryDirectory(prefix="gan-cot-rollout-") as tmp:
        policy, disc = build_tiny_pair(Path(tmp))
        cfg = load_config(
            AdversarialConfig, REPO_ROOT / "configs/tiny.yaml",
            [f"model={policy}", f"discriminator.name={disc}", f"deepspeed={args.deepspeed}", f"seed={args.seed}",
             f"rollout.questions={args.questions}", f"rollout.group_size={args.group_size}",
             f"rollout.max_think_tokens={args.max_think_tokens}", f"output_dir={Path(tmp) / 'out'}",
             f"mlflow_dir={Path(tmp) / 'mlruns'}"],
        )  # fmt: skip
        trainer = AdversarialTrainer(cfg, log=lambda m: None)
        trainer.setup()
        questions = trainer.round_questions(0)
        gather = trainer.strategy.for_generation
        times: dict[str, list[float]] = {"gathered": [], "not_gathered": []}
        for _ in range(args.repeats + 1):  # the first of each is a warm-up
            for name in times:
                trainer.strategy.for_generation = gather if name == "gathered" else contextlib.nullcontext
                torch.manual_seed(args.seed)
                t = time.perf_counter()
                batch = trainer.rollout(questions, explore=True)
                times[name].append(time.perf_counter() - t)
        tokens = sum(len(c.completion_ids) for c in batch.chains)
    result = {
        "deepspeed": args.deepspeed,
        "zero_stage": json.loads(Path(args.deepspeed).read_text())["zero_optimization"]["stage"],
        "chains": len(questions) * args.group_size,
        "tokens": tokens,
        "seconds_gathered": min(times["gathered"][1:]),
        "seconds_not_gathered": min(times["not_gathered"][1:]),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
    }
    if not args.json:
        print(
            f"{args.deepspeed}: {result['seconds_gathered']:.2f} s gathered, {result['seconds_not_gathered']:.2f} s not"
        )
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
