"""What shape a ledger-hard policy's chains take, and how often each shape is right: where a policy's errors come from.

    python scripts/chain_shapes.py --model outputs/comparison/ledger-hard/seed1/gan-cot-length-next/adapter --seed 1 --json
    python scripts/chain_shapes.py --model outputs/comparison/ledger-hard/seed1/oracle/timeline/adapter --alpha 1 --seed 1

Each greedy test chain (the seed's questions, the comparison's budget of 192 thinking and 8 answer tokens) is put in
the first shape that fits it, against the question's timeline (:mod:`gan_cot.tasks.ledger_hard`):

- ``line/direct``: one step or none, for a question with more than one event on the person asked about;
- ``merged``: a step that applies several of their events at once (``Ann: 7 + 3 - 5 = 5``);
- ``mid skip missing``: some ``skip:`` line of an event before the person's last one is not written;
- ``trailing skip missing``: a ``skip:`` line after the person's last event is not written;
- ``timeline``: everything the ``timeline`` chain writes is there (restatements, checks and the like may be too).

The table gives, per shape, the chains and their accuracy; ``--json`` ends with one JSON object (``shapes``: shape ->
``chains``, ``correct``, ``accuracy``; ``accuracy``, ``tokens``). The oracle's ``timeline`` LoRA writes the
``timeline`` shape almost always; a pruned pool that drops skips the policy needed shows up as the other shapes'
errors.
"""

from __future__ import annotations

import argparse
from collections import Counter

from gan_cot.usage import UsageError, fail, print_json

SHAPES = ("timeline", "trailing skip missing", "mid skip missing", "merged", "line/direct")


def shape(problem, steps: list[str]) -> str:
    """The shape of a chain (its steps' texts) for a ledger-hard ``problem``; see the module docstring."""
    from gan_cot.tasks.ledger_hard import _MERGED_RE, _SKIP_RE, skip_step

    steps = [s.strip() for s in steps]
    own = [i for i, e in enumerate(problem.events) if e.person == problem.target]
    if len(steps) <= 1 and len(own) > 1:
        return "line/direct"
    if any((m := _MERGED_RE.match(s)) and m.group(1) in problem.start for s in steps):  # not ``check: 7 + 3 = 10``
        return "merged"
    written = {s for s in steps if _SKIP_RE.match(s)}
    last = own[-1] if own else -1
    others = [(i, skip_step(e)) for i, e in enumerate(problem.events) if e.person != problem.target]
    if any(s not in written for i, s in others if i < last):
        return "mid skip missing"
    if any(s not in written for i, s in others if i > last):
        return "trailing skip missing"
    return "timeline"


def tally(task, examples, rows: list[dict]) -> dict[str, dict]:
    """Per shape (:data:`SHAPES` order, only those seen): ``chains``, ``correct`` and ``accuracy``."""
    by_id = {ex.id: ex for ex in examples}
    chains, correct = Counter(), Counter()
    for r in rows:
        steps = [s.text for s in task.format.steps(r["completion"])]
        s = shape(task.problem(by_id[r["id"]]), steps)
        chains[s] += 1
        correct[s] += bool(r["correct"])
    return {
        s: {"chains": chains[s], "correct": correct[s], "accuracy": correct[s] / chains[s]}
        for s in SHAPES
        if chains[s]
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="a policy folder, or an adapter folder (a run's adapter/)")
    p.add_argument(
        "--alpha", default=None, help="adapter folders: auto, gate or a number (scripts/evaluate.py's --alpha)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="the seed's test questions (the comparison's) and sampling seed"
    )
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--split", default="test")
    p.add_argument("--max-think-tokens", type=int, default=192)
    p.add_argument("--max-answer-tokens", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gan_cot.commands import evaluate as ev

    argv_eval = ["--model", args.model, "--task", "ledger-hard", "--seed", str(args.seed), "--n", str(args.n),
                 "--split", args.split, "--max-think-tokens", str(args.max_think_tokens),
                 "--max-answer-tokens", str(args.max_answer_tokens)]  # fmt: skip
    try:
        ev_args = ev.parse_args(argv_eval + (["--alpha", args.alpha] if args.alpha is not None else []))
        task = ev.make_task(ev_args)
        examples = task.examples(args.split, args.n)
    except (UsageError, ValueError) as e:
        fail(str(e))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = ev.evaluate_model(args.model, ev_args, task, examples, alpha=ev_args.alpha, keep_rows=True)
    shapes = tally(task, examples, result["rows"])
    print(f"{args.model} on {len(examples)} {args.split} questions (seed {args.seed}): accuracy "
          f"{result['accuracy']:.3f}, {result['mean_tokens']:.1f} tokens")  # fmt: skip
    print("| shape | chains | accuracy |\n|---|---|---|")
    for s, f in shapes.items():
        print(f"| {s} | {f['chains']} | {f['accuracy']:.3f} |")
    if args.json:
        print_json({"model": args.model, "alpha": ev_args.alpha, "seed": args.seed, "n": len(examples),
                    "accuracy": result["accuracy"], "tokens": result["mean_tokens"], "shapes": shapes})  # fmt: skip
    return 0
