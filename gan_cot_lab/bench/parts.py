"""The benchmark's three measurements, each against TRL's GRPOTrainer on the same settings: policy-update
throughput, sampled chains to reach a target, and greedy generation time of the trained policy."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from gan_cot_lab.bench.setup import plain_process


def throughput(b) -> dict:
    import torch
    from transformers import TrainerCallback

    from gan_cot.checkpoint import seed_everything
    from gan_cot.trainer import AdversarialTrainer
    from gan_cot.update import policy_update

    cfg = b.our_config("ours-throughput", 1)
    ours = AdversarialTrainer(cfg, log=b.log)
    ours.setup()
    seed_everything(b.seed)
    batch = ours.rollout(ours.round_questions(0), explore=True)  # as a round samples them (gate: per chain)
    scores = ours.score(batch)
    samples = batch.chains

    def update():
        policy_update(ours.ctx, batch, scores, cfg.loss)

    mean_tokens = statistics.fmean(len(s.completion_ids) for s in samples)
    b.log(f"[throughput] {len(samples)} chains sampled, mean {mean_tokens:.1f} tokens")
    t0 = time.perf_counter()
    update()  # warm-up
    warm_ours = time.perf_counter() - t0
    ours_times: list[float] = []

    fixed: dict[str, list] = {}
    tok = ours.tokenizer
    from gan_cot.models import render_prompt

    questions = sorted({s.example_index for s in samples})
    examples = [ours.train_examples[i] for i in questions]
    for s in samples:
        text = render_prompt(tok, b.task.prompt(ours.train_examples[s.example_index]))
        fixed.setdefault(text, []).append((list(s.prompt_ids), list(s.completion_ids)))

    def rollout_func(prompts, trainer):
        """TRL's generation replaced: the same chains ours updates on, G per prompt, in the order TRL asks."""
        handed: dict[str, int] = {}
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None}
        for p in prompts:
            reps = b.g if prompts.count(p) == 1 else 1  # TRL passes each prompt once or G times
            for _ in range(reps):
                k = handed.get(p, 0)
                handed[p] = k + 1
                p_ids, c_ids = fixed[p][k % len(fixed[p])]
                out["prompt_ids"].append(p_ids)
                out["completion_ids"].append(c_ids)
        return out

    cycle = (b.n // b.micro) * cfg.loss.epochs
    trl_times: list[float] = []
    threads: dict[str, int] = {}

    class Timer(TrainerCallback):
        start = 0.0

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step % cycle == 0:
                Timer.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step % cycle == 0:
                trl_times.append(time.perf_counter() - Timer.start)
                threads["trl"] = torch.get_num_threads()
                if len(trl_times) > 1:  # the first TRL cycle is its warm-up; then one of ours after each
                    t = time.perf_counter()
                    update()
                    ours_times.append(time.perf_counter() - t)
                    threads["ours"] = torch.get_num_threads()

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with plain_process():
        trainer, _, _ = b.trl_trainer(
            cfg, examples, "trl-throughput", [Timer()], rollout_func=rollout_func, num_iterations=cfg.loss.epochs,
            beta=cfg.loss.kl_coef, epsilon=cfg.loss.clip_eps, learning_rate=cfg.policy.lr,
            lr_scheduler_type="constant", warmup_steps=0, max_steps=cycle * (b.args.steps + 1),
        )  # fmt: skip
        torch.manual_seed(b.seed)
        trainer.train()
        distributed = str(trainer.accelerator.distributed_type).split(".")[-1]
    timed_trl = trl_times[1:]
    ours_sps = b.n * len(ours_times) / sum(ours_times)
    trl_sps = b.n * len(timed_trl) / sum(timed_trl)
    res = {
        "ours_samples_per_s": ours_sps,
        "trl_samples_per_s": trl_sps,
        "ours_update_seconds": ours_times,
        "trl_update_seconds": timed_trl,
        "ours_warmup_seconds": warm_ours,
        "trl_warmup_seconds": trl_times[0],
        "trl_optimizer_steps_per_update": cycle,
        "trl_distributed_type": distributed,
        "threads": threads,
        "mean_chain_tokens": mean_tokens,
    }
    del trainer
    return res


def ours_to_target(b) -> dict:
    from gan_cot.trainer import AdversarialTrainer

    cfg = b.our_config("ours-target", b.rounds)
    tr = AdversarialTrainer(cfg, log=b.log)
    tr.setup()
    tr.logger.active = False  # no MLflow run here
    history, reached = [], None
    tr.warm_start()  # a sampled SFT pool's chains count as rollouts too; a reference pool samples nothing
    n_pool = min(cfg.sft.pool_questions, len(tr.train_examples))
    pool = n_pool * cfg.sft.pool_samples if cfg.sft.pool_source == "samples" else 0
    references = n_pool if cfg.sft.pool_source == "reference" else 0
    for r in range(b.rounds):
        tr.run_round(r)
        ev = b.val_eval(tr.gate.eval_policy(tr.strategy.model), tr.tokenizer)  # the gate's alpha per question
        history.append({"rollouts": pool + (r + 1) * b.n, **ev})
        b.log(f"[ours] round {r}: {pool + (r + 1) * b.n} rollouts, " + b.fmt_eval(ev))
        if b.reached(ev):
            reached = pool + (r + 1) * b.n
            break
    adapter = tr.save_adapter(b.work / "ours-adapter")  # with its gate, if it has one
    del tr
    return {"rollouts": reached, "rollouts_run": history[-1]["rollouts"], "last": history[-1],
            "reference_chains": references, "history": history, "adapter": str(adapter)}  # fmt: skip


def trl_to_target(b) -> dict:
    from transformers import TrainerCallback

    cfg = b.our_config("trl-target", b.rounds)
    examples = cfg.make_task().examples("train", max(b.q * b.rounds, 512))
    examples = examples[: b.q * b.rounds]  # the questions ours sees, round by round, in its order
    cycle = b.n // b.micro
    history: list[dict] = []
    box: dict = {}
    bench = b

    class Check(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step % cycle:
                return control
            trainer = box["trainer"]
            ev = bench.val_eval(trainer.model, box["tok"])
            trainer.model.train()
            rollouts = box["funcs"][0].completions_seen
            history.append({"rollouts": rollouts, **ev})
            bench.log(f"[trl] generation batch {len(history) - 1}: {rollouts} rollouts, " + b.fmt_eval(ev))
            if bench.reached(ev):
                box["reached"] = rollouts
                control.should_training_stop = True
            return control

    with plain_process():
        trainer, funcs, tok = b.trl_trainer(cfg, examples, "trl-target", [Check()], max_steps=cycle * b.rounds)
        box.update(trainer=trainer, funcs=funcs, tok=tok)
        trainer.train()
    del trainer
    return {"rollouts": box.get("reached"), "rollouts_run": history[-1]["rollouts"] if history else 0,
            "last": history[-1] if history else None, "history": history}  # fmt: skip


def generation_time(b, adapter: str) -> dict:
    import torch

    from gan_cot.gate import GATE_CONFIG, load_gated_policy
    from gan_cot.gate.merged import MergedGatedPolicy
    from gan_cot.generation import Sampling, generate
    from gan_cot.models import load_model

    base, tok = b.load_base()
    sampling = Sampling(max_new_tokens=b.max_len, batch_size=b.args.gen_batch)
    gated = (Path(adapter) / GATE_CONFIG).exists()
    runs = {"base": lambda qs: generate(base, tok, qs, sampling)}
    if gated:  # the gate picks each question's alpha (its features' forward is timed too); the questions then run
        # on their alpha's merged copy of the model, and, for comparison, on the LoRA layers scaled per row
        unmerged = load_gated_policy(adapter)
        merged = MergedGatedPolicy(unmerged.model, unmerged.gate)
        runs["ours"] = lambda qs: generate(merged, tok, qs, sampling)
        runs["ours_unmerged"] = lambda qs: generate(unmerged, tok, qs, sampling)
    else:
        compressed = load_model(adapter, dtype=torch.float32)  # the adapter merged into its base, as deployed
        runs["ours"] = lambda qs: generate(compressed, tok, qs, sampling)

    questions = [b.task.prompt(ex) for ex in b.val]
    times: dict[str, list[float]] = {name: [] for name in runs}
    tokens: dict[str, float] = {}
    for run in runs.values():  # warm-up
        run(questions[: min(2, len(questions))])
    for _ in range(b.args.gen_repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            out = run(questions)
            times[name].append((time.perf_counter() - t) / len(questions))
            tokens[name] = statistics.fmean(g[0].num_tokens for g in out)
    result = {f"{name}_seconds_per_answer": min(t) for name, t in times.items()}
    result |= {f"{name}_mean_tokens": tokens[name] for name in ("base", "ours")}
    return result | {"ours_gated": gated, "token_ratio": tokens["ours"] / tokens["base"], "runs": times}
