"""Benchmark: the adversarial trainer against TRL's GRPOTrainer, side by side on one model, in one command.

    python scripts/bench.py                                   # the shipped base, defaults below (~15 min, 2 CPUs)
    python scripts/bench.py --json --seed 0 --steps 3 --group-size 4 --questions 32 --max-rollouts 1920
    python scripts/bench.py --tiny --questions 2 --group-size 2 --max-rollouts 8 --val-n 4    # seconds, for tests
    .venv-vllm/bin/python scripts/bench.py --engines-only     # only the rollout engines (make vllm-env first)

Both trainers get the same base policy, the same LoRA adapter (``lora`` of configs/default.yaml), the same
questions in the same order, the same group size G, questions per round Q (N = Q x G sampled chains) and lengths
(``rollout.max_think_tokens`` + ``rollout.max_answer_tokens`` for TRL's ``max_completion_length``). Three figures
against TRL, and the rollout engines:

``update_throughput_ratio``
    Policy-update samples/s of ours over TRL's, generation excluded on both sides, on the same N sampled chains.
    Ours: :func:`gan_cot.update.policy_update` through its DeepSpeed engine (old and reference log-probs, then
    ``loss.epochs`` PPO-clip passes in micro-batches of ``loss.micro_batch``). TRL: the training steps of one
    generation batch of ``GRPOTrainer`` configured to do the same work (``per_device_train_batch_size`` = the
    micro-batch, ``steps_per_generation`` = N / micro-batch, ``num_iterations`` = epochs, ``beta`` = ``kl_coef``,
    ``epsilon`` = ``clip_eps``), timed between TRL's ``on_step_begin`` and ``on_step_end`` callbacks, with its
    generation replaced by a ``rollout_func`` that hands back the same chains: its steps still tokenize, score the
    rewards, compute advantages, old and reference log-probs, the loss, backward, clipping and the optimizer step.
    Each side warms up once; then ``--steps`` timed repetitions, alternating ours and TRL's (the machine's load
    drifts), and the ratio of the total samples/s.
``rollouts_to_target_ratio``
    Sampled chains ours needs to reach ``tokens_vs_minimal <= --target`` (1.2) at an accuracy at least the base's
    (greedy, on the first ``--val-n`` validation questions, checked after every round of N chains), over what TRL
    GRPO with the Kimi length reward needs (the grpo-kimi baseline: correctness + ``kimi_weight`` x Kimi k1.5's group
    length reward, its learning rate, warm-up and ``beta`` from configs/baselines/grpo-kimi.yaml, checked after
    every generation batch of N). Each stops at ``--max-rollouts``; if either did not reach the target, the ratio
    is null and both counts (null for the one that did not) and the last figures are reported; when only ours
    reached it, ``rollouts_to_target_ratio_below`` is the bound (ours over the chains TRL ran). A pool from the
    task's reference chains (``sft.pool_source: reference``) samples nothing: its size is reported beside ours.
``generation_time_ratio``
    Greedy generation seconds per answer of the policy ours trained in the previous part (adapter merged, as
    deployed; with an alpha gate, the gate choosing each question's alpha, its forward timed too, and each question
    run on its alpha's merged copy of the model) over the base's, on the same validation questions, the same budget
    and batch size (best of ``--gen-repeats`` alternating runs). ``token_ratio`` (ours' mean tokens over the base's)
    beside it is what the time ratio should follow; with a gate, ``ours_unmerged_seconds_per_answer`` is the same
    policy on LoRA layers scaled per row.
``engines`` (:mod:`gan_cot_lab.bench.engines`)
    Rollout tokens/s of vLLM against Hugging Face generate on the same model, prompts, budgets and sampling, and
    gated inference (each question on its alpha's adapter) against the ungated merged adapter, on the adapter trained
    above; skipped, with the reason, where vLLM is not installed.

Everything prints as a table with the settings and wall seconds; the last line is one JSON object (with ``--json``
only that line goes to stdout). A benchmark, not a test: timings depend on the machine and its load (reported).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path


def ratio(a, b):
    if a is None or b is None or not b or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


def engine_doc() -> str:
    from gan_cot_lab.bench import engines

    return " ".join(engines.__doc__.split())


def table(result: dict) -> str:
    from gan_cot_lab.bench.engines import lines as engine_lines

    if "generation_time" in result and "throughput" not in result:  # --generation-adapter
        gt = result["generation_time"]
        rows = [f"greedy s/answer: ours {gt['ours_seconds_per_answer']:.4f}, base {gt['base_seconds_per_answer']:.4f}, "
                f"ratio {result['generation_time_ratio']:.3f} (tokens {gt['token_ratio']:.3f})"]  # fmt: skip
        if "ours_unmerged_seconds_per_answer" in gt:
            rows.append(f"gated on LoRA layers scaled per row: {gt['ours_unmerged_seconds_per_answer']:.4f} s/answer, "
                        f"ratio {gt['ours_unmerged_seconds_per_answer'] / gt['base_seconds_per_answer']:.3f}")  # fmt: skip
        return "\n".join(rows + ["", f"wall seconds: {result['wall_seconds']}"])
    if "throughput" not in result:  # --engines-only
        return "\n".join(engine_lines(result["engines"]) + ["", f"wall seconds: {result['wall_seconds']}"])
    s, tp, rt, gt = result["settings"], result["throughput"], result["rollouts_to_target"], result["generation_time"]
    ours_r, trl_r = rt["ours"], rt["trl"]

    def num(x, f="{:.3f}"):
        return "n/a" if x is None else f.format(x)

    rows = [
        ("figure", "ours", "TRL GRPO", "ratio (target)"),
        ("update samples/s", num(tp["ours_samples_per_s"], "{:.2f}"), num(tp["trl_samples_per_s"], "{:.2f}"),
         f"{num(result['update_throughput_ratio'])} (>= 1.0)"),
        ("rollouts to target", f"{num(ours_r['rollouts'], '{}')} of {ours_r['rollouts_run']} run"
         + (f" (+{ours_r['reference_chains']} reference chains)" if ours_r.get("reference_chains") else ""),
         f"{num(trl_r['rollouts'], '{}')} of {trl_r['rollouts_run']} run",
         (f"< {result['rollouts_to_target_ratio_below']:.3f}" if result.get("rollouts_to_target_ratio_below")
          else num(result["rollouts_to_target_ratio"])) + " (<= 0.67)"),
        ("last val accuracy", num(ours_r["last"]["accuracy"]), num((trl_r["last"] or {}).get("accuracy")),
         f"base {rt['base']['accuracy']:.3f}"),
        ("last val tokens_vs_minimal", num(ours_r["last"]["tokens_vs_minimal"]),
         num((trl_r["last"] or {}).get("tokens_vs_minimal")), f"base {num(rt['base']['tokens_vs_minimal'])}"),
        ("greedy s/answer", num(gt["ours_seconds_per_answer"], "{:.4f}"), "-",
         f"{num(result['generation_time_ratio'])} (tokens {gt['token_ratio']:.3f}; "
         f"vs base {gt['base_seconds_per_answer']:.4f})"),
    ] + ([("greedy s/answer, LoRA per row", num(gt["ours_unmerged_seconds_per_answer"], "{:.4f}"), "-",
           num(gt["ours_unmerged_seconds_per_answer"] / gt["base_seconds_per_answer"]))]
         if "ours_unmerged_seconds_per_answer" in gt else [])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", *engine_lines(result["engines"])] if "engines" in result else []
    lines.append("")
    lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines.append("wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["wall_seconds"].items()))
    lines.append(f"load average: start {result['load_average']['start']}, end {result['load_average']['end']}")
    return "\n".join(lines)


NOTES = (
    "update throughput: generation excluded on both sides, same N sampled chains (sampled once by our trainer); "
    "ours = gan_cot.update.policy_update (old + reference log-probs, loss.epochs PPO-clip passes) through its "
    "DeepSpeed engine; TRL = GRPOTrainer's training steps for one generation batch (num_iterations = epochs, beta = "
    "kl_coef, same micro-batch), timed from on_step_begin to on_step_end, its generation replaced by a rollout_func "
    "returning those chains (reward scoring, advantages, old/reference log-probs, loss, backward, clipping, "
    "optimizer step all included); one warm-up each, then alternating timed repetitions. "
    "rollouts to target: ours first fills its SFT pool (sft.pool_source: sampled chains count as rollouts; the "
    "task's reference chains, pruned by the discriminator, are reported beside the count, they are not sampled), "
    "then runs whole rounds (SFT on its shortest/pruned correct chains, rollout, discriminator "
    "scoring, update, discriminator refresh on the task's gold step labels); TRL GRPO is the grpo-kimi baseline "
    "(correctness + Kimi length reward; its lr, warm-up and beta) with our batch, group, lengths, LoRA and question "
    "order; both checked greedily on the validation subset after every N chains; a null ratio means one or both "
    "did not reach the target within max_rollouts (when only ours did, rollouts_to_target_ratio_below bounds it: "
    "ours over the rollouts TRL ran without reaching it). generation time: greedy, ours = the adapter from the "
    "rollouts-to-target part (whether or not it reached the target) merged into the base (with an alpha gate: "
    "the gate choosing each question's alpha, its forward timed too, each question on its alpha's merged copy), "
    "against the base."
)


def run(args, log) -> dict:
    import torch

    from gan_cot.distributed import init_distributed
    from gan_cot_lab.bench import parts
    from gan_cot_lab.bench.engines import engine_speed
    from gan_cot_lab.bench.setup import Bench

    started = time.time()
    load_start = round(os.getloadavg()[0], 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gan-cot-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        b = Bench(args, work, log)
        b.prepare_models()
        settings = b.settings()
        init_distributed()
        b.task = b.our_config("task", 1).make_task()
        b.val = b.task.examples("validation", args.val_n)
        walls: dict[str, float] = {}
        if args.engines_only:
            t = time.time()
            engines = engine_speed(b)
            walls["engines"] = walls["total"] = time.time() - t
            return {"engines": engines, "settings": settings, "notes": engine_doc(),
                    "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
                    "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)}}  # fmt: skip

        if args.generation_adapter:
            t = time.time()
            gen = parts.generation_time(b, args.generation_adapter)
            walls["generation_time"] = walls["total"] = time.time() - t
            return {"generation_time_ratio": ratio(gen["ours_seconds_per_answer"], gen["base_seconds_per_answer"]),
                    "generation_time": gen, "settings": settings, "adapter": args.generation_adapter,
                    "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
                    "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)}}  # fmt: skip

        t = time.time()
        base, tok = b.load_base()
        b.base_eval = b.val_eval(base, tok)
        del base
        log(f"[base] {b.fmt_eval(b.base_eval)}")
        walls["base_eval"] = time.time() - t

        t = time.time()
        tp = parts.throughput(b)
        walls["throughput"] = time.time() - t
        log(f"[throughput] ours {tp['ours_samples_per_s']:.2f} samples/s, TRL {tp['trl_samples_per_s']:.2f}")

        t = time.time()
        ours = parts.ours_to_target(b)
        walls["ours_to_target"] = time.time() - t
        t = time.time()
        trl = parts.trl_to_target(b)
        walls["trl_to_target"] = time.time() - t

        t = time.time()
        adapter = ours.pop("adapter")
        gen = parts.generation_time(b, adapter)
        walls["generation_time"] = time.time() - t
        t = time.time()
        engines = engine_speed(b, adapter)
        walls["engines"] = time.time() - t
        walls["total"] = time.time() - started
    return {
        "update_throughput_ratio": ratio(tp["ours_samples_per_s"], tp["trl_samples_per_s"]),
        "rollouts_to_target_ratio": ratio(ours["rollouts"], trl["rollouts"]),
        # ours reached the target and TRL did not within its run: the ratio is below ours / TRL's rollouts run
        "rollouts_to_target_ratio_below": ratio(ours["rollouts"], trl["rollouts_run"])
        if ours["rollouts"] is not None and trl["rollouts"] is None
        else None,
        "generation_time_ratio": ratio(gen["ours_seconds_per_answer"], gen["base_seconds_per_answer"]),
        "ours_rollouts_to_target": ours["rollouts"],
        "trl_rollouts_to_target": trl["rollouts"],
        "throughput": tp,
        "rollouts_to_target": {"base": b.base_eval, "ours": ours, "trl": trl},
        "generation_time": gen,
        "engines": engines,
        "settings": settings,
        "notes": NOTES,
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
        "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }
