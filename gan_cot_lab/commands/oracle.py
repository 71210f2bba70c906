"""The oracle of a task with chains at several granularities (ledger-hard): a LoRA per granularity, per difficulty
level the shortest granularity that keeps the base's accuracy, and the limit row of the comparison.

    python scripts/oracle.py --config configs/ledger-hard.yaml --json            # the published oracle table
    python scripts/oracle.py --config configs/ledger-hard.yaml --steps 100 --val-n 100 --eval-n 100   # a quick look

For each granularity of the task (``1``, ``2``, ``3`` events per step, ``line``, ``direct``) a LoRA of the config's
size is trained on the base for ``--steps`` SFT steps (the config's warm-start steps, batch and learning rate) on the
first ``sft.pool_questions`` training questions written at that granularity, then evaluated greedily on
``--val-n`` validation and ``--eval-n`` test questions with the config's token budget. The choice per level is made
on validation and reported on test (:mod:`gan_cot_lab.oracle`). Every LoRA is logged to MLflow as method
``sft-<granularity>`` and the oracle as method ``oracle`` (with per-question rows, so ``compare_runs.py`` gives it an
interval). Prints the table (accuracy per level and granularity on test, the base's, the choice); writes
``OUTPUT/oracle.json``; with ``--json`` the last line is that JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, fail, print_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(REPO_ROOT / "configs/ledger-hard.yaml"), help="the gan-cot config")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="SFT steps per granularity (default: sft.warmup_steps)")
    p.add_argument("--val-n", type=int, default=500, help="validation questions the choice is made on")
    p.add_argument("--eval-n", type=int, default=None, help="test questions (default: the config's eval.n)")
    p.add_argument("--tolerance", type=float, default=0.0, help="accuracy below the base's a choice may lose")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: oracle-TASK)")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--output", default=None, help="adapters and oracle.json (default outputs/oracle/TASK)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p.parse_args(argv)


def train_granularity(cfg, task, tok, examples, granularity: str, steps: int, seed: int):
    """A LoRA (the config's size) on the base, trained on ``examples`` written at ``granularity``."""
    chains = [task.granular_steps(ex, granularity) for ex in examples]
    return train_lora(cfg, task, tok, examples, chains, steps, seed, f"sft {granularity}")


def train_lora(cfg, task, tok, examples, chains: list[list[str]], steps: int, seed: int, desc: str):
    """A LoRA (the config's size) on the base, ``steps`` SFT steps (the config's batch and learning rate, a short
    warm-up and a cosine decay) on ``examples`` written as ``chains`` (their steps; the answer is appended)."""
    import torch
    from peft import get_peft_model

    from gan_cot.models import load_model, render_prompt
    from gan_cot.sft import train_sft

    torch.manual_seed(seed)
    model = get_peft_model(load_model(cfg.model, dtype=torch.float32), cfg.lora.peft())
    prompts = [render_prompt(tok, task.prompt(ex)) for ex in examples]
    texts = [task.format.render(steps_, ex.answer) for ex, steps_ in zip(examples, chains)]
    lr = cfg.sft.lr or cfg.policy.lr
    train_sft(model, tok, prompts, texts, steps=steps, batch_size=cfg.sft.batch_size, seed=seed, lr=lr,
              warmup=min(50, steps // 10), desc=desc)  # fmt: skip
    return model


def format_table(levels: list[int], granularities, test_levels: dict, base_levels: dict, choice: dict) -> str:
    head = ["level", "n", "base", *granularities, "choice"]
    cells = [head]
    for d in levels:
        cells.append([str(d), str(base_levels[d]["n"]), f"{base_levels[d]['accuracy']:.3f}",
                      *(f"{test_levels[g][d]['accuracy']:.3f}" for g in granularities), choice.get(d, "-")])  # fmt: skip
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from gan_cot.config_loader import ConfigError, load_config
        from gan_cot.trainer_config import AdversarialConfig

        cfg = load_config(AdversarialConfig, args.config, [f"seed={args.seed}"])
        task = cfg.make_task()
        if not hasattr(task, "granular_steps"):
            raise UsageError(f"task {cfg.task!r} does not write chains at granularities; use ledger-hard")
    except (ConfigError, UsageError, ValueError) as e:
        fail(str(e))
    import torch

    from gan_cot import tracking
    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks.ledger_hard import GRANULARITIES
    from gan_cot_lab import oracle

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    steps = args.steps or cfg.sft.warmup_steps
    eval_n = args.eval_n or cfg.eval.n
    out = Path(args.output or REPO_ROOT / "outputs" / "oracle" / cfg.task)
    tok = load_tokenizer(cfg.model)
    think, answer = cfg.eval_budgets
    settings = EvalSettings(max_think_tokens=think, max_answer_tokens=answer, batch_size=cfg.eval.batch_size,
                            seed=args.seed)  # fmt: skip
    splits = {"validation": task.examples("validation", args.val_n), "test": task.examples("test", eval_n)}

    def rows_of(model, split: str) -> tuple[dict, list[dict]]:
        res = evaluate(model, tok, task, splits[split], settings, keep_rows=True)
        return res, res.pop("rows")

    base_model = load_model(cfg.model, dtype=torch.float32)
    base = {s: rows_of(base_model, s) for s in splits}
    del base_model
    train = task.examples("train", cfg.sft.pool_questions)
    rows: dict[str, dict[str, list[dict]]] = {"validation": {}, "test": {}}
    for g in GRANULARITIES:
        model = train_granularity(cfg, task, tok, train, g, steps, args.seed)
        model.save_pretrained(out / g / "adapter")
        for split in splits:
            rows[split][g] = rows_of(model, split)[1]
        print(f"granularity {g}: test {oracle.summary(rows['test'][g])}", flush=True)
        del model
    choice = oracle.choose(rows["validation"], base["validation"][1], args.tolerance)
    limit = oracle.oracle_rows(rows["test"], choice, fallback="1")
    hindsight = oracle.hindsight_rows(rows["test"], base["test"][1])
    test_levels = {g: oracle.by_level(r) for g, r in rows["test"].items()}
    base_levels = oracle.by_level(base["test"][1])
    levels = sorted(base_levels)
    print(format_table(levels, GRANULARITIES, test_levels, base_levels, choice))
    figures = {"oracle": oracle.summary(limit), "hindsight": oracle.summary(hindsight),
               "base": oracle.summary(base["test"][1])} | {f"sft-{g}": oracle.summary(r) for g, r in rows["test"].items()}  # fmt: skip
    for name, f in figures.items():
        print(f"{name}: accuracy {f['accuracy']:.3f}, tokens {f['tokens']:.1f} (n={f['n']})")
    tracking.setup(args.experiment or f"oracle-{cfg.task}", args.mlflow_dir)
    params = {"steps": steps, "val_n": args.val_n, "tolerance": args.tolerance, "config": str(args.config)}
    base_res = base["test"][0]

    def log_run(method: str, final: dict, rows: list[dict], extra: dict | None = None) -> str:
        return tracking.log_eval_run(method, args.seed, cfg.task, task, base_res, final, rows, params | (extra or {}))

    run_ids = {f"sft-{g}": log_run(f"sft-{g}", oracle.summary(r), r) for g, r in rows["test"].items()}
    run_ids["oracle"] = log_run(
        "oracle", figures["oracle"], limit, {f"choice_level_{d}": g for d, g in choice.items()}
    )
    result = {
        "task": cfg.task, "seed": args.seed, "steps": steps, "val_n": args.val_n, "eval_n": eval_n,
        "choice": {str(d): g for d, g in choice.items()}, "figures": figures,
        "levels": {str(d): {"n": base_levels[d]["n"], "base": base_levels[d]["accuracy"],
                            **{g: test_levels[g][d]["accuracy"] for g in GRANULARITIES},
                            **{f"{g}_tokens": test_levels[g][d]["tokens"] for g in GRANULARITIES}} for d in levels},
        "runs": run_ids, "wall_seconds": round(time.time() - started, 1),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "oracle.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
