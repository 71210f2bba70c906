"""Evaluate a policy on a task split: accuracy, chain tokens and, where known, tokens vs the minimal chain.

    python scripts/evaluate.py --model models/ledger-verbose-base --task ledger --split test --n 500 --json
    python scripts/evaluate.py --model PATH --task gsm8k --data ../shared/data/gsm8k --n 200 --samples 4
    python scripts/evaluate.py --model outputs/adv/default/adapter --base models/ledger-verbose-base --json
    python scripts/evaluate.py --model outputs/adv/default/adapter --alpha 1.5 --max-think-tokens 40 --json

Greedy decoding by default; ``--samples k`` samples k chains per question (temperature ``--temperature``)
and reports avg@k accuracy. Tokens are reported in all, and split into thinking (before ``####``) and
answer. ACU (accuracy points per billion parameters per hundred tokens) is always reported; ``--base MODEL``
also evaluates the model before compression on the same questions and reports the compression rate
(``1 - tokens / base tokens``) and AES against it (see ``gan_cot/efficiency.py``). The last line is one
JSON object with ``--json``.

An adapter folder with a saved alpha gate (``alpha_gate.json``, written by a run with the learned gate) is
evaluated unmerged with the gate choosing each question's alpha (``--alpha auto``, the default for such a
folder), or at the fixed alpha the run's validation chose over the gate (``gate.select``) where it chose one;
``--alpha gate`` lets the gate answer even then; ``--alpha FLOAT`` fixes alpha for every question instead (any
adapter folder, gate or not: the LoRA delta is scaled, CoT-Valve style). ``--max-think-tokens N`` is a thinking budget: a chain still thinking after N tokens
gets the end of thinking (``\n####``) appended and ``--max-answer-tokens`` more tokens to answer; with
``--base`` the base gets the same budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gan_cot.shipped import DEFAULT_BASE
from gan_cot.tasks import DEFAULT_TASK, GENERATED, TASKS, TaskDataError, get_task
from gan_cot.usage import UsageError, check_model_path, fail, print_json

GENERATED_N = 500  # questions drawn from a built-in task when --n is not given


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=str(DEFAULT_BASE), help="saved model folder or Hub id")
    p.add_argument("--base", default=None, help="the model before compression: also evaluate it and compare")
    p.add_argument("--task", default=DEFAULT_TASK, help=f"one of: {', '.join(sorted(TASKS))}")
    p.add_argument("--format", default="hash", choices=["hash", "r1"], help="chain format (gan_cot/formats.py)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when there is a GPU)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="auto: bf16 on GPUs")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--n", type=int, default=None,
        help=f"number of questions, the first n of the split (default: all of a data file or split; {GENERATED_N} "
        "for the built-in tasks)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="sampling seed; the ledger task's data seed too")
    p.add_argument("--samples", type=int, default=1, help="chains per question; >1 samples and reports avg@k")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--alpha",
        default=None,
        help="adapter folders: auto (the default when a gate is saved: the alpha the run's validation chose "
        "(gate.select), else the saved gate per question), gate (the saved gate per question, whatever validation "
        "chose) or a number >= 0 (the LoRA delta scaled by it for every question)",
    )
    p.add_argument("--max-think-tokens", type=int, default=None, help="thinking budget: force the end of thinking")
    p.add_argument(
        "--max-answer-tokens", type=int, default=None,
        help="tokens allowed after the end of thinking (default: the format's, 8 for hash, 32 for r1)",
    )  # fmt: skip
    p.add_argument(
        "--instruction", default="auto",
        help="appended to each question: auto (the format's instruction for a chat model, none for the tiny "
        "policies), none, or the text itself",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--data", default=None,
        help="data path for file-backed tasks (gsm8k: a folder with test.jsonl, or a .jsonl file evaluated whole)",
    )  # fmt: skip
    p.add_argument("--skip-bad", action="store_true", help="skip malformed data lines and count them")
    p.add_argument("--show", type=int, default=0, help="print this many completions")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own code (off by default)")
    p.add_argument(
        "--experiment", default=None,
        help="also log the evaluation as a finished MLflow run of this experiment, with its per-question rows, so "
        "compare_runs.py puts it beside the trained methods (run_comparison.py's base row)",
    )  # fmt: skip
    p.add_argument("--method", default="base", help="--experiment: the run's method tag (default base)")
    p.add_argument("--mlflow-dir", default=None, help="--experiment: local MLflow store folder (default mlruns/)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    if args.task not in TASKS:
        raise UsageError(f"unknown task {args.task!r}; known tasks: {', '.join(sorted(TASKS))}")
    for key in ("n", "samples", "max_new_tokens", "batch_size", "max_think_tokens", "max_answer_tokens"):
        if getattr(args, key) is not None and getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be positive, got {args.temperature}")
    from gan_cot.vocab import check_policy_vocab

    for flag, path in (("--model", args.model), ("--base", args.base)):
        if path is not None:
            check_model_path(path)
            try:
                check_policy_vocab(path, trust_remote_code=args.trust_remote_code)
            except ValueError as e:
                raise UsageError(f"{flag}: {e}") from e
    args.alpha = resolve_alpha(args.model, args.alpha)
    return args


def resolve_alpha(model: str, alpha: str | None) -> str | float | None:
    """``--alpha`` checked against the model folder: "auto" or "gate" (its saved gate), a float, or None (no gating: a
    plain model, or an adapter without a gate, loaded merged). A folder with a saved gate defaults to "auto"."""
    from gan_cot.gate import GATE_CONFIG

    folder = Path(model)
    has_gate = (folder / GATE_CONFIG).exists()
    if alpha is None:
        return "auto" if has_gate else None
    if alpha in ("auto", "gate"):
        if not has_gate:
            raise UsageError(
                f"--alpha {alpha} needs a saved alpha gate, and {model} has none ({GATE_CONFIG}); train with "
                "the learned gate (gate.kind=learned), or fix alpha with --alpha FLOAT"
            )
        return alpha
    try:
        value = float(alpha)
    except ValueError:
        raise UsageError(f"--alpha must be auto, gate or a number >= 0, got {alpha!r}") from None
    if not value >= 0:
        raise UsageError(f"--alpha must be auto, gate or a number >= 0, got {alpha!r}")
    if not (folder / "adapter_config.json").exists():
        raise UsageError(
            f"--alpha {alpha} scales a LoRA adapter's delta, and {model} is not an adapter folder "
            "(no adapter_config.json)"
        )
    return value


def make_task(args):
    from gan_cot.formats import get_format

    if args.task in GENERATED:
        task = get_task(args.task, seed=args.seed)
    elif args.task == "gsm8k":  # a single file is evaluated whole: no split of it is held out
        task = get_task("gsm8k", path=args.data, skip_bad=args.skip_bad, split_file=False)
    else:
        task = get_task(args.task)
    task.format = get_format(args.format)
    if args.max_answer_tokens is None:
        args.max_answer_tokens = task.format.answer_tokens
    return task


def evaluate_model(path: str, args, task, examples, keep_completions: int = 0, alpha=None, keep_rows=False) -> dict:
    """Load ``path``, evaluate it with the command's decoding settings, free it; adds ``n_params`` and ``acu``.

    ``alpha`` ("auto", "gate" or a float): load the adapter folder unmerged with its gate (if saved) and scale the
    delta by the gate's alpha (or the selected one: ``resolve_alpha``) or by the float."""
    import torch

    from gan_cot.efficiency import acu
    from gan_cot.evaluate import EvalSettings, count_parameters, evaluate
    from gan_cot.models import load_model, load_tokenizer, resolve_dtype, resolve_instruction, set_instruction

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(args.dtype) if device != "cpu" or args.dtype != "auto" else torch.float32
    try:
        tok = load_tokenizer(path, trust_remote_code=args.trust_remote_code)
        instruction = set_instruction(tok, resolve_instruction(args.instruction, tok, task.format))
        if alpha is None:
            model = load_model(path, dtype=dtype, trust_remote_code=args.trust_remote_code).to(device)
        else:
            from gan_cot.gate import load_gated_policy

            fixed = None if alpha in ("auto", "gate") else alpha
            model = load_gated_policy(path, dtype=dtype, alpha=fixed, use_selected=alpha != "gate")
    except (UsageError, ValueError, OSError) as e:
        fail(str(e))
        model.peft_model.to(device)
        if model.gate is not None:
            model.gate.to(device)
    settings = EvalSettings(
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        max_think_tokens=args.max_think_tokens,
        max_answer_tokens=args.max_answer_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    result = evaluate(model, tok, task, examples, settings, keep_completions=keep_completions, keep_rows=keep_rows)
    if alpha is None:
        result["n_params"] = count_parameters(model)
    else:  # the unmerged adapter and the gate run at inference too
        gate_params = count_parameters(model.gate) if model.gate is not None else 0
        result["n_params"] = count_parameters(model.peft_model) + gate_params
        result["alpha"] = alpha
    result["acu"] = acu(result["accuracy"], result["n_params"], result["mean_tokens"])
    result["instruction"] = instruction
    del model
    return result


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        task = make_task(args)
        n = args.n if args.n is not None or args.task not in GENERATED else GENERATED_N
        examples = task.examples(args.split, n)
    except (UsageError, TaskDataError, ValueError) as e:
        fail(str(e))
    if not examples:
        fail(f"split {args.split!r} of task {args.task!r} has no examples")
    args.n = len(examples)
    if getattr(task, "whole_file", False):
        args.split = "all"  # every record of the file, whatever --split said
        print(f"{task.path}: evaluating {len(examples)} record(s), the whole file", flush=True)

    from gan_cot.efficiency import against_base

    result = evaluate_model(args.model, args, task, examples, keep_completions=args.show, alpha=args.alpha,
                            keep_rows=args.experiment is not None)  # fmt: skip
    rows = result.pop("rows", None)
    for c in result.pop("completions", []):
        print(
            f"--- {c['question']}\n{c['completion']}\n(answer {c['answer']}, {'correct' if c['correct'] else 'wrong'})"
        )
    if getattr(task, "skipped_lines", None) is not None:  # every bad line of the data read, whatever its split
        result["skipped_lines"] = task.skipped_lines
    result.update(model=args.model, task=args.task, split=args.split)
    if args.max_think_tokens is not None:
        result["max_think_tokens"] = args.max_think_tokens
    line = f"{args.task}/{args.split} n={result['n']}: accuracy {result['accuracy']:.3f}, mean tokens {result['mean_tokens']:.1f}"
    line += f" (thinking {result['mean_thinking_tokens']:.1f}, answer {result['mean_answer_tokens']:.1f})"
    if "tokens_vs_minimal" in result:
        line += f", minimal {result['mean_minimal_tokens']:.1f}, tokens_vs_minimal {result['tokens_vs_minimal']:.3f}"
    line += f", ACU {_fmt(result['acu'], '.4g')}, well formed {result['well_formed']:.3f}"
    print(line, flush=True)
    if args.alpha is not None:
        levels = ", ".join(f"{d}: {a:.3f}" for d, a in result.get("alpha_difficulty", {}).items())
        print(
            f"alpha {args.alpha}: mean {result['alpha_mean']:.3f} (std {result['alpha_std']:.3f}, min "
            f"{result['alpha_min']:.3f}, max {result['alpha_max']:.3f})"
            + (f"; per difficulty {levels}" if levels else ""),
            flush=True,
        )
    if args.max_think_tokens is not None:
        print(f"thinking budget {args.max_think_tokens}: {result['forced']} chains forced to answer", flush=True)
    if args.base is not None:
        base = evaluate_model(args.base, args, task, examples)
        for key in ("accuracy", "mean_tokens", "mean_thinking_tokens", "mean_answer_tokens", "n_params", "acu"):
            result[f"base_{key}"] = base[key]
        if "tokens_vs_minimal" in base:
            result["base_tokens_vs_minimal"] = base["tokens_vs_minimal"]
        result["base_model"] = args.base
        result.update(against_base(result, base))
        print(
            f"base {args.base}: accuracy {base['accuracy']:.3f}, mean tokens {base['mean_tokens']:.1f}"
            f" (thinking {base['mean_thinking_tokens']:.1f}), ACU {_fmt(base['acu'], '.4g')}; "
            f"compression {_fmt(result['compression'], '.3f')}"
            f" (thinking {_fmt(result.get('thinking_compression'), '.3f')}), AES {_fmt(result['aes'], '.3f')}",
            flush=True,
        )
    if args.experiment is not None:
        result["run_id"] = log_run(args, task, result, rows)
    if args.json:
        print_json(result)
    return 0


def log_run(args, task, result: dict, rows: list[dict]) -> str:
    """The evaluation as a finished run of ``--experiment`` (its base figures: ``--base``'s, or its own)."""
    from gan_cot import tracking

    tracking.setup(args.experiment, args.mlflow_dir)
    prefix = "base_" if args.base is not None else ""
    base = {k: result.get(prefix + k) for k in ("accuracy", "mean_tokens", "mean_minimal_tokens")}
    params = {"model": args.model, "split": args.split, "n": args.n, "max_think_tokens": args.max_think_tokens,
              "max_answer_tokens": args.max_answer_tokens, "format": args.format, "samples": args.samples,
              "instruction": result.get("instruction")}  # fmt: skip
    final = {"accuracy": result["accuracy"], "tokens": result["mean_tokens"]}
    return tracking.log_eval_run(args.method, args.seed, args.task, task, base, final, rows, params)


if __name__ == "__main__":
    sys.exit(main())
