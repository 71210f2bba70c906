"""Run one seed-method baseline: shorten the base policy, evaluate before and after, log one MLflow run.

    python scripts/train_baseline.py --config configs/baselines/srs.yaml
    python scripts/train_baseline.py --config configs/baselines/grpo-kimi.yaml train.steps=10 eval.n=50
    python scripts/train_baseline.py --config configs/baselines/merge.yaml merge.other=outputs/baselines/dpo/adapter

Methods (``method:``): srs, dpo, grpo (``grpo.reward``: kimi, o1pruner, shorterbetter, l1), budget-forcing,
merge, c3ot, tokenskip, implicit-cot, system1-distill, step-skip; see gan_cot_lab/baselines/. The last line printed is one JSON object: method, run_id, output_dir, base and
final accuracy / mean tokens / tokens_vs_minimal, n_params, rollouts, wall_seconds.
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.config_loader import ConfigError, describe, load_config
from gan_cot.usage import UsageError, check_model_path, fail, print_json


def main(argv=None) -> int:
    from gan_cot_lab.baselines.config import BaselineConfig

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="top-level keys:\n" + describe(BaselineConfig),
    )
    p.add_argument("--config", default=None, help="YAML config, e.g. configs/baselines/srs.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections (grpo.reward=l1)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(BaselineConfig, args.config, args.overrides)
        check_model_path(cfg.model)
        from gan_cot.vocab import check_policy_vocab

        check_policy_vocab(cfg.model)
    except (ConfigError, UsageError, ValueError) as e:
        fail(str(e))
    from gan_cot.tasks import TaskDataError
    from gan_cot_lab.baselines import BaselineError, run

    try:
        result = run(cfg, log=lambda m: print(m, flush=True))
    except (UsageError, BaselineError, TaskDataError) as e:
        fail(str(e))
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
