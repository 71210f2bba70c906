"""What the warm start's held-out check per drop (``sft.backoff``, :mod:`gan_cot.backoff`) takes back, per kind of
step of the built-in tasks.

The pool's labels are the base's policy labels of ``--pool`` training chains (the thresholds of ``--config``); the
trained policy (``--adapter``, a LoRA folder on that base; default the base itself) answers ``--n`` validation
questions greedily with the config's budgets; the check then takes back the drops whose nearest left-out steps come
from its wrong chains. The task's generator knows each step's kind (``skip``, ``restate``, ``check``, ...), which the
check never sees: the table gives, per kind, the drops and the fraction taken back. ``--json`` prints one JSON
object last.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from gan_cot.usage import UsageError, fail, print_json

TASKS = ("ledger", "ledger-hard")


def kind_table(examples, before: list[list[str]], after: list[list[str]]) -> dict[str, dict[str, float]]:
    """Per kind of step: the pool's drops of it and the fraction taken back (useful after, not before)."""
    drops, back = Counter(), Counter()
    for ex, old, new in zip(examples, before, after):
        for kind, o, n in zip(ex.meta["kinds"], old, new):
            if o != "useful":
                drops[kind] += 1
                back[kind] += n == "useful"
    return {k: {"drops": drops[k], "taken_back": back[k] / drops[k]} for k in sorted(drops, key=lambda k: -drops[k])}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/ledger-hard.yaml", help="a train_adv.py config: the base, task, "
                   "policy-label thresholds, budgets and sft.backoff_* settings its runs use")  # fmt: skip
    p.add_argument("--adapter", default=None, help="the trained policy: a LoRA adapter folder on the config's base "
                   "(default: the base itself)")  # fmt: skip
    p.add_argument("--pool", type=int, default=300, help="training chains whose base labels are the pool's drops")
    p.add_argument("--n", type=int, default=500, help="validation questions the trained policy answers")
    p.add_argument("--seed", type=int, default=0, help="the task's seed (its questions)")
    p.add_argument("--neighbours", type=int, default=None, help="default: the config's sft.backoff_neighbours")
    p.add_argument("--z", type=float, default=None, help="default: the config's sft.backoff_z")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gan_cot.config_loader import ConfigError, load_config
    from gan_cot.trainer_config import AdversarialConfig

    try:
        cfg = load_config(AdversarialConfig, args.config)
        if cfg.task not in TASKS:
            raise UsageError(f"--config {args.config}: task {cfg.task} has no step kinds; use a config of "
                             f"{' or '.join(TASKS)}")  # fmt: skip
        if args.pool <= 0 or args.n <= 0:
            raise UsageError("--pool and --n must be positive")
    except (ConfigError, OSError) as e:
        fail(f"--config {args.config}: {e}")
    except UsageError as e:
        fail(str(e))
    import torch

    from gan_cot.backoff import backoff_labels
    from gan_cot.discriminator.refresh import policy_records
    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks import make_task

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    task = make_task(cfg.task, seed=args.seed)
    tok = load_tokenizer(cfg.model)
    base = load_model(cfg.model, dtype=torch.float32).eval()
    policy = base
    if args.adapter:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(load_model(cfg.model, dtype=torch.float32), args.adapter).eval()
    held = task.examples("validation", args.n)
    settings = EvalSettings(max_think_tokens=cfg.rollout.max_think_tokens,
                            max_answer_tokens=cfg.rollout.max_answer_tokens, batch_size=cfg.eval.batch_size)  # fmt: skip
    res = evaluate(policy, tok, task, held, settings, keep_rows=True, show_progress=True)
    pool = task.examples("train", args.pool)
    steps = [[s.strip() for s in ex.steps] for ex in pool]
    labels = [r.labels for r in policy_records(base, tok, task, pool, steps, cfg.discriminator)]
    k = args.neighbours if args.neighbours is not None else cfg.sft.backoff_neighbours
    z = args.z if args.z is not None else cfg.sft.backoff_z
    rows = res["rows"]
    new, stats = backoff_labels(policy, tok, task, pool, steps, labels, held, [r["completion"] for r in rows],
                                [r["correct"] for r in rows], k, z)  # fmt: skip
    kinds = kind_table(pool, labels, new)
    print(f"{args.adapter or cfg.model} on {stats.questions} validation questions (seed {args.seed}): accuracy "
          f"{res['accuracy']:.3f}; {stats.omitted} reference steps left out ({stats.omitted_wrong} in wrong chains); "
          f"{stats.restored} of {stats.drops} drops of {args.pool} pool chains taken back (neighbours wrong above "
          f"{stats.threshold:.3f}, k {k}, z {z:g}); {time.time() - started:.1f} s")  # fmt: skip
    print("| kind | drops | taken back |\n|---|---|---|")
    for kind, row in kinds.items():
        print(f"| {kind} | {row['drops']} | {row['taken_back']:.2f} |")
    if args.json:
        print_json({"config": args.config, "adapter": args.adapter, "seed": args.seed, "n": stats.questions,
                    "pool": args.pool, "accuracy": res["accuracy"], "omitted": stats.omitted,
                    "omitted_wrong": stats.omitted_wrong, "drops": stats.drops, "restored": stats.restored,
                    "threshold": stats.threshold, "neighbours": k, "z": z, "kinds": kinds,
                    "seconds": time.time() - started})  # fmt: skip
    return 0
