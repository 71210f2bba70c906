"""The GPU smoke test: the real-model path end to end on tiny models built here, in minutes, with no internet.

    python scripts/gpu_smoke.py --json                # on a machine with a CUDA GPU
    python scripts/gpu_smoke.py --cpu --json          # the same steps on a CPU in float32 (checks the script)

A tiny R1-style policy (pad == eos, a chat template that opens ``<think>``), a discriminator on its backbone and a
GSM8K file (the shared data when it exists, else the test fixture repeated) are written to a work folder; then, each
as its own command, every one timed and checked:

1. ``evaluate``: scripts/evaluate.py on the R1 preset with a thinking budget;
2. ``discriminator``: scripts/train_discriminator.py on GSM8K step labels;
3. ``zero2`` and ``zero3``: two rounds of ``deepspeed scripts/train_adv.py --config configs/qwen1.5b_gsm8k.yaml`` at toy
   sizes, bf16 (float32 with ``--cpu``), under ZeRO-2 and ZeRO-3;
4. ``resume``: the ZeRO-2 run resumed to a third round;
5. ``vllm``: the ZeRO-2 run's two rounds with ``rollout.engine=vllm`` (each round's adapter sent as LoRA requests);
6. ``vllm_speed``: scripts/bench.py --engines-only on the tiny policy: rollout tokens/s of vLLM against Hugging Face
   generate on the same model, prompts, budgets and batch (the target on a GPU: >= 3x), and gated against merged.

Where vLLM is not installed, 5 and 6 are skipped (listed under ``skipped`` with the reason), not failed. The last
line is one JSON object: the device, ``passed``, ``failed`` and ``skipped`` step names, and each step's exit code,
seconds and last JSON line (its figures). Exit code 1 when a step failed. ``--only vllm,vllm_speed`` runs some steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gan_cot.distributed import free_port
from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import print_json

GSM8K_DIR = REPO_ROOT.parent / "shared" / "data" / "gsm8k"
STEPS = ("evaluate", "discriminator", "zero2", "zero3", "resume", "vllm", "vllm_speed")
TOY = [
    "rounds=2", "rollout.questions=4", "rollout.group_size=2", "rollout.max_think_tokens=32",
    "rollout.max_answer_tokens=8", "rollout.batch_size=8", "loss.micro_batch=4", "sft.pool_questions=16",
    "sft.warmup_steps=4", "sft.steps=1", "sft.batch_size=4", "discriminator.refresh_steps=1",
    "discriminator.label_chains=2", "discriminator.label_rollouts=2", "eval.n=8", "eval.every=0", "checkpoint_every=1",
    "lora.r=8", "lora.alpha=16",
]  # fmt: skip


def build(work: Path) -> tuple[Path, Path, Path]:
    """The tiny R1-style policy, a discriminator on its backbone, and a GSM8K file of 600 questions."""
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.models import build_tiny_model, build_tiny_tokenizer, save_pretrained

    tok = build_tiny_tokenizer(style="r1")
    model, _ = build_tiny_model(tok, hidden_size=64, layers=2, heads=2)
    policy = save_pretrained(model, tok, work / "policy")
    disc = Discriminator.from_backbone(str(policy), base_model="tiny R1-style policy").save_pretrained(work / "disc")
    source = GSM8K_DIR / "train.jsonl"
    lines = source.read_text().splitlines()[:600] if source.exists() else []
    if len(lines) < 600:
        rows = [json.loads(x) for x in (REPO_ROOT / "tests/fixtures/gsm8k_small.jsonl").read_text().splitlines() if x]
        lines = [json.dumps({**rows[i % len(rows)], "id": f"q{i}"}) for i in range(600)]
    data = work / "gsm8k.jsonl"
    data.write_text("\n".join(lines) + "\n")
    return policy, disc, data


def run(name: str, cmd: list[str], log: Path, env: dict, timeout: int) -> dict:
    started = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout)
        rc, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (e.stdout, e.stderr))
        rc, err = 124, err + f"\ntimed out after {timeout} s"
    log.write_text(out + "\n--- stderr ---\n" + err)
    last = None
    for line in reversed(out.strip().splitlines()):
        try:
            last = json.loads(line)
            break
        except ValueError:
            continue
    step = {"rc": rc, "seconds": round(time.time() - started, 1), "result": last}
    if rc != 0:
        step["error"] = err.strip().splitlines()[-1] if err.strip() else "no output"
    print(f"{name}: exit {rc} in {step['seconds']} s", file=sys.stderr, flush=True)
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="run the steps on the CPU in float32 (no GPU needed)")
    p.add_argument("--workdir", default=None, help="keep everything in this folder (default: a temporary one)")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per step")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--only", default=",".join(STEPS), help="comma-separated steps to run (default: all)")
    args = p.parse_args(argv)
    wanted = set(args.only.split(","))
    if wanted - set(STEPS):
        p.error(f"--only: unknown steps {sorted(wanted - set(STEPS))}; choose among {', '.join(STEPS)}")
    if "resume" in wanted:
        wanted.add("zero2")  # it resumes the ZeRO-2 run

    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --cpu to check the steps on the CPU", file=sys.stderr)
        return 2
    started = time.time()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gan-cot-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    policy, disc, data = build(work)
    py = sys.executable
    deepspeed = shutil.which("deepspeed") or str(Path(py).parent / "deepspeed")
    dtype = "float32" if args.cpu else "bfloat16"
    device = ["--device", "cpu"] if args.cpu else []
    store = work / "mlruns"
    steps, skipped = {}, {}
    if "evaluate" in wanted:
        steps["evaluate"] = run("evaluate", [
            py, "scripts/evaluate.py", "--model", str(policy), "--task", "gsm8k", "--data", str(data), "--format", "r1",
            "--n", "8", "--max-think-tokens", "32", "--max-answer-tokens", "8", "--dtype", dtype, *device, "--json",
        ], work / "evaluate.log", env, args.timeout)  # fmt: skip
    if "discriminator" in wanted:
        steps["discriminator"] = run("discriminator", [
            py, "scripts/train_discriminator.py", "task=gsm8k", f"data={data}", f"backbone={policy}",
            f"output={work / 'disc-trained'}", "name=smoke", "train_size=64", "eval_size=16", "steps=10",
            "batch_size=8", f"mlflow_dir={store}", "--json",
        ], work / "discriminator.log", env, args.timeout)  # fmt: skip

    def train(stage: int, out: str, *extra: str) -> list[str]:
        return [
            deepspeed, "--num_gpus", "1", "--master_port", str(free_port()), "scripts/train_adv.py", "--config", "configs/qwen1.5b_gsm8k.yaml",
            f"model={policy}", f"discriminator.name={disc}", f"data={data}", *TOY, f"policy.dtype={dtype}",
            f"deepspeed=configs/deepspeed/zero{stage}.json", f"output_dir={work / out}", f"mlflow_dir={store}", *extra,
        ]  # fmt: skip

    for stage in (2, 3):
        if f"zero{stage}" in wanted:
            steps[f"zero{stage}"] = run(f"zero{stage}", train(stage, f"zero{stage}"), work / f"zero{stage}.log", env,
                                        args.timeout)  # fmt: skip
    if "resume" in wanted:
        resume = train(2, "zero2", "rounds=3", "--resume")
        steps["resume"] = run("resume", resume, work / "resume.log", env, args.timeout)
    for name in ("vllm", "vllm_speed"):
        if name in wanted and importlib.util.find_spec("vllm") is None:
            skipped[name] = "vLLM is not installed (pip install 'gan-cot[vllm]')"
    if "vllm" in wanted and "vllm" not in skipped:
        eager = ["rollout.vllm_eager=true"] if args.cpu else []  # a CPU: no compilation
        steps["vllm"] = run("vllm", train(2, "vllm", "rollout.engine=vllm", *eager), work / "vllm.log", env,
                            args.timeout)  # fmt: skip
    if "vllm_speed" in wanted and "vllm_speed" not in skipped:
        q, g, think = (4, 2, 16) if args.cpu else (32, 8, 96)  # a CPU: a check of the step, not a measurement
        steps["vllm_speed"] = run("vllm_speed", [
            py, "scripts/bench.py", "--engines-only", "--model", str(policy), "--val-n", str(q), "--group-size", str(g),
            "--max-think-tokens", str(think), "--max-answer-tokens", "8", "--gen-batch", str(q), "--gen-repeats", "2",
            "--workdir", str(work / "bench"), "--json",
        ], work / "vllm_speed.log", env, args.timeout)  # fmt: skip
    ok = {name: s["rc"] == 0 and s["result"] is not None for name, s in steps.items()}
    if "resume" in ok:
        resumed, first = steps["resume"]["result"] or {}, steps["zero2"]["result"] or {}
        ok["resume"] = ok["resume"] and resumed.get("run_id") == first.get("run_id")  # the same MLflow run went on
    if "vllm_speed" in ok:
        engines = (steps["vllm_speed"]["result"] or {}).get("engines", {})
        ok["vllm_speed"] = "rollout_vllm_vs_hf" in engines  # measured (the 3x is a target, reported, not a check)
    summary = {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "passed": [n for n, good in ok.items() if good],
        "failed": [n for n, good in ok.items() if not good],
        "skipped": skipped,
        "steps": steps,
        "workdir": str(work),
        "seconds": round(time.time() - started, 1),
    }
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print_json(summary)
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
