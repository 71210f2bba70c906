"""What in a warm start's targets makes a ledger-hard policy lose its place: LoRAs trained like the oracle's on the
same questions, written in different ways, and the shapes of their test chains.

    python scripts/target_ablation.py --config configs/ledger-hard.yaml --targets pruned,clean,walk,timeline --json

Each target set writes the first ``sft.pool_questions`` training questions of the seed:

- ``pruned``: the reference chain without the steps the config's policy labels drop (the base labels them, as the
  warm-start pool of ``sft.prune_by: policy`` does; its targets exactly);
- ``clean``: the reference chain without its restatements, checks, detours, slips and wrong operations (by the
  generator's kinds): every ``skip:`` line and update, and the reference's merged steps, lines and direct answers;
- ``walk``: ``clean``, but a question whose reference is a line or a direct answer is written as its timeline
  instead (the merged steps stay);
- ``timeline``: the oracle's ``timeline`` chains (no merged step, no line, every skip).

A LoRA of the config's size is trained on each (``scripts/oracle.py``'s procedure: ``--steps`` SFT steps, the
config's batch and learning rate) and answers the seed's test questions greedily; its chains are put in the shapes of
``scripts/chain_shapes.py``. The kinds are the generator's: this is a diagnostic of the task, not a method. Prints a
table (per target set: the targets' tokens and their shares with a merged step, a line or direct answer, a left-out
skip; then test accuracy, tokens and shapes); ``--json`` ends with one JSON object. ``--output`` keeps the LoRAs
(``scripts/backoff_kinds.py --adapter OUTPUT/pruned/adapter`` then shows what the check per drop takes back when the
policy has fit the pool).
"""

from __future__ import annotations

import argparse
import time

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, fail, print_json

TARGETS = ("pruned", "clean", "walk", "timeline")
CLEAN_KINDS = ("update", "merge", "skip", "line")


def written(task, ex, target: str, keep: list[str] | None = None) -> list[str]:
    """The steps of ``ex`` in target set ``target`` (``keep``: the policy labels' useful steps, for ``pruned``)."""
    if target == "pruned":  # as the pool sets it
        from gan_cot.pool import target_steps

        return target_steps(task, ex, list(ex.steps), list(ex.steps if keep is None else keep))
    if target == "timeline":
        return task.granular_steps(ex, "timeline")
    kinds = ex.meta["kinds"]
    if target == "walk" and (not ex.steps or kinds == ["line"]):
        return task.granular_steps(ex, "timeline")
    return [s for s, k in zip(ex.steps, kinds) if k in CLEAN_KINDS]


def composition(task, examples, chains: list[list[str]]) -> dict[str, float]:
    """The targets' mean steps and their shares with a merged step, a line or direct answer, and a left-out skip."""
    from gan_cot_lab.commands.chain_shapes import shape

    shapes = [shape(task.problem(ex), steps) for ex, steps in zip(examples, chains)]
    n = max(len(chains), 1)
    return {
        "steps": sum(map(len, chains)) / n,
        "merged": shapes.count("merged") / n,
        "line_direct": shapes.count("line/direct") / n,
        "skip_missing": sum(s.endswith("skip missing") for s in shapes) / n,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(REPO_ROOT / "configs/ledger-hard.yaml"), help="the gan-cot config")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    p.add_argument("--seed", type=int, default=0, help="the task's seed (its questions) and the training seed")
    p.add_argument("--steps", type=int, default=None, help="SFT steps per target set (default: sft.warmup_steps)")
    p.add_argument("--n", type=int, default=500, help="test questions")
    p.add_argument("--output", default=None, help="save each LoRA as OUTPUT/TARGETS/adapter (default: not saved)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gan_cot.config_loader import ConfigError, load_config
    from gan_cot.trainer_config import AdversarialConfig

    try:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise UsageError(f"--targets {args.targets!r}: choose from {', '.join(TARGETS)}")
        if args.n <= 0 or (args.steps is not None and args.steps <= 0):
            raise UsageError("--n and --steps must be positive")
        cfg = load_config(AdversarialConfig, args.config, [f"seed={args.seed}"])
        if cfg.task != "ledger-hard":
            raise UsageError(f"--config {args.config}: task {cfg.task} has no timeline; use a ledger-hard config")
    except (ConfigError, UsageError, ValueError) as e:
        fail(str(e))
    import torch

    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot_lab.commands.chain_shapes import tally
    from gan_cot_lab.commands.oracle import train_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    task = cfg.make_task()
    tok = load_tokenizer(cfg.model)
    train = task.examples("train", cfg.sft.pool_questions)
    test = task.examples("test", args.n)
    steps = args.steps or cfg.sft.warmup_steps
    think, answer = cfg.eval_budgets
    settings = EvalSettings(max_think_tokens=think, max_answer_tokens=answer, batch_size=cfg.eval.batch_size,
                            seed=args.seed)  # fmt: skip
    keeps = None
    if "pruned" in targets:  # the warm-start pool's own labels: SFTPool with the policy labeler, the base labelling
        from gan_cot.discriminator.refresh import policy_records
        from gan_cot.pool import SFTPool

        base = load_model(cfg.model, dtype=torch.float32)

        def labeler(exs, chains):
            return [r.labels for r in policy_records(base, tok, task, exs, chains, cfg.discriminator, cfg.rollout)]

        pool = SFTPool(cfg, tok, task, train)
        one = type("One", (), {"is_main": True, "sum": staticmethod(lambda v: v)})()
        with torch.no_grad():
            pool.fill_from_references(list(range(len(train))), None, one, labeler)
        keeps = [[t for t, lab in zip(r.steps, r.labels) if lab == "useful"] for r in pool.records]
        del base, pool
    results = {}
    for target in targets:
        chains = [written(task, ex, target, keeps[i] if keeps else None) for i, ex in enumerate(train)]
        made = composition(task, train, chains)
        model = train_lora(cfg, task, tok, train, chains, steps, args.seed, f"sft {target}")
        if args.output:
            model.save_pretrained(f"{args.output}/{target}/adapter")
        res = evaluate(model, tok, task, test, settings, keep_rows=True)
        rows = res.pop("rows")
        shapes = tally(task, test, rows)
        results[target] = {
            "targets": made,
            "accuracy": res["accuracy"],
            "tokens": res["mean_tokens"],
            "shapes": shapes,
        }
        print(f"{target}: targets {made}; test accuracy {res['accuracy']:.3f} at {res['mean_tokens']:.1f} tokens; "
              + ", ".join(f"{s} {f['chains']} ({f['accuracy']:.3f})" for s, f in shapes.items()), flush=True)  # fmt: skip
        del model
    print("| targets | steps | merged | line/direct | skip left out | test accuracy | tokens | skip left out (test) |")
    print("|---|---|---|---|---|---|---|---|")
    for target, r in results.items():
        t, s = r["targets"], r["shapes"]
        missing = sum(f["chains"] for k, f in s.items() if k.endswith("skip missing")) / args.n
        print(f"| {target} | {t['steps']:.2f} | {t['merged']:.3f} | {t['line_direct']:.3f} | {t['skip_missing']:.3f} "
              f"| {r['accuracy']:.3f} | {r['tokens']:.1f} | {missing:.3f} |")  # fmt: skip
    if args.json:
        print_json({"config": args.config, "seed": args.seed, "steps": steps, "n": args.n, "results": results,
                    "wall_seconds": round(time.time() - started, 1)})  # fmt: skip
    return 0
