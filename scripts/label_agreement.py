"""How often automatic (rollout-based) step labels agree with the ledger task's gold labels.

    python scripts/label_agreement.py --policy outputs/ledger-minimal --n 200 --json

The policy continues every prefix of each chain (``--rollouts`` samples, greedy when 1); success-rate
drops mark wrong steps and progress marks useful ones (see ``gan_cot/discriminator/labels.py``). The
chains are ledger chains written at random verbosity, from the validation split by default. The last
line is one JSON object with ``--json``: ``agreement`` (fraction of steps whose automatic label equals
the gold one) and per-class precision / recall / F1 of the automatic labels.
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.cli import UsageError, check_model_path, fail, print_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--policy", required=True, help="policy that continues the prefixes (folder or Hub id)")
    p.add_argument("--split", default="validation")
    p.add_argument("--n", type=int, default=200, help="chains to label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rollouts", type=int, default=1, help="continuations per prefix (1 = greedy)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--drop", type=float, default=0.5, help="success-rate change that marks a step wrong")
    p.add_argument("--progress", type=float, default=0.5, help="fraction of a step's tokens of saved work = useful")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.n <= 0 or args.rollouts <= 0:
            raise UsageError("--n and --rollouts must be positive")
        check_model_path(args.policy)
    except UsageError as e:
        fail(str(e))

    import torch
    from tqdm.auto import tqdm

    from gan_cot.discriminator.data import ledger_records
    from gan_cot.discriminator.labels import AutoLabelConfig, label_chains
    from gan_cot.discriminator.train import metrics_table, step_metrics
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks.ledger import LedgerTask

    torch.manual_seed(args.seed)
    task = LedgerTask(seed=args.seed)
    examples = task.examples(args.split, args.n)
    records = ledger_records(task, args.split, args.n, args.seed)
    tok = load_tokenizer(args.policy)
    policy = load_model(args.policy, dtype=torch.float32)
    cfg = AutoLabelConfig(rollouts=args.rollouts, temperature=args.temperature, drop=args.drop, progress=args.progress)
    total = sum(len(r.steps) + 1 for r in records)
    with tqdm(total=total, desc="rollouts", leave=False) as bar:
        auto = label_chains(policy, tok, task, examples, [r.steps for r in records], cfg, progress_bar=bar.update)
    gold = [lab for r in records for lab in r.labels]
    pred = [lab for a in auto for lab in a.labels]
    m = step_metrics(gold, pred)
    print(metrics_table(m))
    print(f"agreement with gold labels: {m['accuracy']:.3f} over {m['n_steps']} steps")
    if args.json:
        print_json({"agreement": m["accuracy"], **m, "policy": args.policy, "split": args.split, "n": len(records),
                    "seed": args.seed, "rollouts": args.rollouts})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
