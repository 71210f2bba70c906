"""What an automatic step labeler calls each kind of step of the built-in tasks, against the gold labels.

    python scripts/label_agreement.py --config configs/ledger-hard.yaml --n 200 --json   # what its runs' labels call
    python scripts/label_agreement.py --task ledger-hard --policy models/ledger-hard-verbose-base --n 200 --json
    python scripts/label_agreement.py --labeler rollouts --policy outputs/ledger-minimal --n 200 --json

``--labeler policy`` (the trainer's default, ``discriminator.labels=policy``): a step is redundant only if the policy
still answers without it, from the policy's likelihood of the rest of the chain with and without the step
(``gan_cot/discriminator/policy_labels.py``; ``--lean``, ``--lean-next``, ``--stop``, ``--wrong`` are its thresholds). ``--labeler
rollouts``: the policy continues every prefix (``--rollouts`` samples, greedy when 1); success-rate drops mark wrong
steps and progress marks useful ones (``gan_cot/discriminator/labels.py``). The chains are the task's reference
chains of the ``--split`` (validation by default), whose generator knows each step's kind (``update``, ``skip``,
``restate``, ``check``, ``detour``, ``slip``, ``wrong_op``, ...). The table gives, per kind, the fraction of its steps
the labeler calls useful, redundant and wrong; with ``--json`` the last line is one JSON object with those fractions
(``kinds``), the agreement with the gold labels and per-class precision / recall / F1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict

from gan_cot.usage import UsageError, check_model_path, fail, print_json


def kind_table(kinds: list[str], labels: list[str]) -> dict[str, dict[str, float]]:
    """Per kind of step: how many there are and the fraction given each label."""
    by: dict[str, Counter] = defaultdict(Counter)
    for k, lab in zip(kinds, labels):
        by[k][lab] += 1
    out = {}
    for k in sorted(by):
        n = sum(by[k].values())
        out[k] = {"steps": n, **{lab: by[k][lab] / n for lab in ("useful", "redundant", "wrong")}}
    return out


def relabel_sweep(auto, kinds: list[str], cfg, key: str, values: list[float]) -> dict[str, dict[str, float]]:
    """The fraction of each kind called redundant when ``cfg.<key>`` takes each of ``values`` (the same
    measurements, relabelled)."""
    from dataclasses import replace

    from gan_cot.discriminator.policy_labels import labels_from_lean

    out = {}
    for value in values:
        c = replace(cfg, **{key: value})
        labels = [lab for a in auto for lab in labels_from_lean(a.lean, a.answer_gain, a.stop_loss, c, a.next_lean)]
        out[f"{value:g}"] = {k: row["redundant"] for k, row in kind_table(kinds, labels).items()}
    return out


TASKS = ("ledger", "ledger-hard")  # the tasks whose reference chains know each step's kind
UNSET = object()  # --lean-next not given: the config's (None, off, is a value of its own)


def _float_or_none(text: str) -> float | None:
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor none") from None


def from_config(args) -> None:
    """Fill what ``args`` leaves unset from ``--config`` (its model, task and ``discriminator.label_*``), else from
    the trainer's defaults; UsageError naming the config where it cannot be read or its task has no kinds."""
    from gan_cot.config_loader import ConfigError, load_config
    from gan_cot.trainer_config import AdversarialConfig

    try:
        cfg = load_config(AdversarialConfig, args.config)
    except (ConfigError, OSError) as e:
        raise UsageError(f"--config {args.config}: {e}") from e
    if args.config is not None:
        if cfg.task not in TASKS and args.task is None:
            raise UsageError(f"--config {args.config}: task {cfg.task} has no step kinds to check; use a config of "
                             f"{' or '.join(TASKS)}")  # fmt: skip
        args.policy = args.policy or cfg.model
        args.task = args.task or cfg.task
    if args.policy is None:
        raise UsageError("give --policy (a model folder) or --config (a train_adv.py config that names one)")
    args.task = args.task or "ledger"
    d = cfg.discriminator
    args.lean = d.label_lean if args.lean is None else args.lean
    args.stop = d.label_stop if args.stop is None else args.stop
    args.wrong = d.label_wrong if args.wrong is None else args.wrong
    args.lean_next = d.label_lean_next if args.lean_next is UNSET else args.lean_next
    args.confirm = d.label_confirm if args.confirm is None else args.confirm
    args.max_think_tokens = cfg.rollout.max_think_tokens
    args.max_answer_tokens = cfg.rollout.max_answer_tokens


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=None, help="a train_adv.py config (configs/ledger-hard.yaml): the policy, "
                   "task and policy-label thresholds its runs use, each unless given below")  # fmt: skip
    p.add_argument("--policy", default=None, help="the policy the labels are relative to (folder or Hub id; "
                   "required without --config)")  # fmt: skip
    p.add_argument("--task", default=None, choices=list(TASKS), help="default: the config's, else ledger")
    p.add_argument("--labeler", default="policy", choices=["policy", "rollouts"])
    p.add_argument("--split", default="validation")
    p.add_argument("--n", type=int, default=200, help="chains to label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lean", type=float, default=None, help="policy: nats/token the rest must lose for a useful step "
                   "(default: discriminator.label_lean of the config, else the trainer's)")  # fmt: skip
    p.add_argument("--stop", type=float, default=None, help="policy: nats the end marker must lose for a useful step "
                   "(default: discriminator.label_stop)")  # fmt: skip
    p.add_argument("--lean-next", type=_float_or_none, default=UNSET, help="policy: nats/token the next step must "
                   "lose for a useful step, none for off (default: discriminator.label_lean_next)")  # fmt: skip
    p.add_argument("--wrong", type=float, default=None, help="policy: nats/token the answer must gain for a wrong "
                   "step (default: discriminator.label_wrong)")  # fmt: skip
    p.add_argument(
        "--sweep-stop",
        default=None,
        help="policy: comma-separated --stop values; prints the fraction of "
        "each kind called redundant at each (the same measurements, relabelled), JSON key stop_sweep",
    )
    p.add_argument(
        "--sweep-lean-next",
        default=None,
        help="policy: the same for comma-separated --lean-next values (JSON key lean_next_sweep)",
    )
    p.add_argument("--confirm", default=None, action=argparse.BooleanOptionalAction,
                   help="policy: confirm each drop by the policy's continuation of the pruned chain (default: "
                   "discriminator.label_confirm)")  # fmt: skip
    p.add_argument("--rollouts", type=int, default=1, help="rollouts: continuations per prefix (1 = greedy)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--drop", type=float, default=0.5, help="rollouts: success-rate change that marks a step wrong")
    p.add_argument("--progress", type=float, default=0.5, help="rollouts: fraction of a step's tokens of saved work")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.n <= 0 or args.rollouts <= 0:
            raise UsageError("--n and --rollouts must be positive")
        sweep = [float(x) for x in args.sweep_stop.split(",")] if args.sweep_stop else []
        sweep_next = [float(x) for x in args.sweep_lean_next.split(",")] if args.sweep_lean_next else []
        if (sweep or sweep_next or args.lean_next is not UNSET or args.confirm) and args.labeler != "policy":
            raise UsageError("--sweep-stop, --sweep-lean-next, --lean-next and --confirm are for --labeler policy")
        from_config(args)
        check_model_path(args.policy)
    except UsageError as e:
        fail(str(e))

    import torch
    from tqdm.auto import tqdm

    from gan_cot.discriminator.train import metrics_table, step_metrics
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks import make_task

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task = make_task(args.task, seed=args.seed)
    examples = task.examples(args.split, args.n)
    chains = [[s.strip() for s in ex.steps] for ex in examples]
    tok = load_tokenizer(args.policy)
    policy = load_model(args.policy, dtype=torch.float32)
    started = time.perf_counter()
    confirm = None
    if args.labeler == "policy":
        from gan_cot.discriminator.policy_labels import PolicyLabelConfig, step_lean

        cfg = PolicyLabelConfig(lean=args.lean, stop=args.stop, wrong=args.wrong, lean_next=args.lean_next,
                                confirm=bool(args.confirm), max_new_tokens=args.max_think_tokens,
                                max_answer_tokens=args.max_answer_tokens)  # fmt: skip
        questions, answers = [task.prompt(ex) for ex in examples], [ex.answer for ex in examples]
        auto = step_lean(policy, tok, task.format, questions, chains, answers, cfg)
        if args.confirm:
            from gan_cot.discriminator.policy_labels import confirm_drops

            with tqdm(total=sum(lab != "useful" for a in auto for lab in a.labels) * 2, desc="confirm",
                      leave=False) as bar:  # fmt: skip
                confirmed, confirm = confirm_drops(policy, tok, task, examples, chains, [a.labels for a in auto], cfg,
                                                   progress=bar.update)  # fmt: skip
            for a, labs in zip(auto, confirmed):
                a.labels = labs
    else:
        from gan_cot.discriminator.labels import AutoLabelConfig, label_chains

        cfg = AutoLabelConfig(
            rollouts=args.rollouts, temperature=args.temperature, drop=args.drop, progress=args.progress
        )
        with tqdm(total=sum(len(c) + 1 for c in chains), desc="rollouts", leave=False) as bar:
            auto = label_chains(policy, tok, task, examples, chains, cfg, progress_bar=bar.update)
    seconds = time.perf_counter() - started
    gold = [lab for ex in examples for lab in ex.labels]
    pred = [lab for a in auto for lab in a.labels]
    kinds = kind_table([k for ex in examples for k in ex.meta["kinds"]], pred)
    m = step_metrics(gold, pred)
    print(metrics_table(m))
    print(f"{'kind':<10} {'steps':>6} {'useful':>7} {'redundant':>10} {'wrong':>6}")
    for k, row in kinds.items():
        print(f"{k:<10} {row['steps']:>6} {row['useful']:>7.2f} {row['redundant']:>10.2f} {row['wrong']:>6.2f}")
    print(f"agreement with gold labels: {m['accuracy']:.3f} over {m['n_steps']} steps, {seconds:.1f} s")
    if confirm is not None:
        print(f"confirmed by continuation: {confirm.restored} of {confirm.tested} drops taken back "
              f"({confirm.continuations} continuations, {confirm.tokens} tokens)")  # fmt: skip
    sweeps = {}
    for key, values in (("stop", sweep), ("lean_next", sweep_next)):
        if values:
            sweeps[key] = relabel_sweep(auto, [k for ex in examples for k in ex.meta["kinds"]], cfg, key, values)
            names = list(kinds)
            flag = "--" + key.replace("_", "-")
            print(f"called redundant at each {flag}:\n" + f"{key:>9} " + " ".join(f"{k:>9}" for k in names))
            for value, row in sweeps[key].items():
                print(f"{value:>9} " + " ".join(f"{row.get(k, 0.0):>9.2f}" for k in names))
    if args.json:
        print_json({"config": args.config, "lean": args.lean, "lean_next": args.lean_next, "stop": args.stop,
                    "wrong": args.wrong, "confirm": bool(args.confirm),
                    "confirm_tested": confirm.tested if confirm else None,
                    "confirm_restored": confirm.restored if confirm else None, "stop_sweep": sweeps.get("stop", {}), "lean_next_sweep": sweeps.get("lean_next", {}), "agreement": m["accuracy"], **m, "kinds": kinds, "policy": args.policy, "task": args.task,
                    "labeler": args.labeler, "split": args.split, "n": len(examples), "seed": args.seed,
                    "seconds": round(seconds, 1)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
