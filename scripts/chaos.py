"""Kill the adversarial trainer at random moments, resume it each time, and check that nothing was lost.

    python scripts/chaos.py                       # 5 kills, seed 0, a tiny policy and discriminator, 6 rounds
    python scripts/chaos.py --kills 3 --seed 1 --rounds 4 --json

First an unbroken run of ``scripts/train_adv.py`` (one process, no launcher) on a tiny policy and discriminator
built into a temporary folder, with a checkpoint every round, measures the expected run time T. Then the same
run (same seed, its own output folder and MLflow experiment in the same SQLite store) is started, killed with
SIGKILL (the whole process group) at a moment drawn uniformly (seeded by ``--seed``) within the attempt's
expected run time, and started again with ``--resume``, ``--kills`` times; the last resume runs to the end.
The expected run time is T for the first attempt; for a resume, the unbroken run's start-up plus its time from
the round of the checkpoint to the end. The drawn moment is placed on the unbroken run's clock and tied to the
progress line before it (``round r:``, ``resumed from``, or the process start) plus the same offset, so a kill
lands in the same phase (start-up, a round, a checkpoint save, the final evaluation and saves) however busy
the machine is; an attempt that finishes first completes the run. Checked:

* the run completes (exit 0, result.json);
* every checkpoint on disk loads, after every kill and at the end (state and RNG JSON, adapter and
  discriminator safetensors, the DeepSpeed state files); a ``.tmp`` folder is an unfinished write and is
  not counted, ``latest`` must name a folder that exists;
* the per-round MLflow metrics and the final metrics equal those of the unbroken run within
  ``1e-4 * max(1, |value|)`` (``max_metric_diff`` is the largest absolute difference);
* the killed run's MLflow experiment holds exactly one run whose round metrics have steps 0..rounds-1. A
  round logged twice (killed after logging, before its checkpoint, so run again after the resume) is
  accepted when every value logged for it agrees with the others within the same tolerance; such rounds are
  listed in ``rounds_logged_twice``, and ``duplicate_logs`` counts every (metric, step) logged more than once
  (final and base metrics logged again by a resume after the last checkpoint included).

The last line is one JSON object: kills, resumed, completed, max_metric_diff, corrupt_checkpoints, wall_seconds,
and the details (``problems`` lists every failed check; exit code 1 when there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gan_cot.cli import REPO_ROOT, print_json

TRAIN_ADV = REPO_ROOT / "scripts" / "train_adv.py"
DEEPSPEED_CONFIG = REPO_ROOT / "configs" / "deepspeed" / "zero0.json"
TINY_RUN = (
    "rollout.questions=2", "rollout.group_size=2", "rollout.max_think_tokens=12", "rollout.max_answer_tokens=4",
    "eval.n=2", "sft.steps=1", "sft.batch_size=2", "sft.source=reference", "sft.pool_questions=0", "sft.warmup_steps=0", "loss.micro_batch=4", "loss.epochs=1",
    "discriminator.refresh_steps=1", "checkpoint_every=1",
)  # fmt: skip
REL_TOL = 1e-4
RESULT_KEYS = ("base_accuracy", "accuracy", "base_mean_tokens", "mean_tokens", "base_tokens_vs_minimal",
               "tokens_vs_minimal", "n")  # fmt: skip
_ROUND_RE = re.compile(r"^round (\d+): ")


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(a))


def train_cmd(shared, out: Path, store: Path, experiment: str, rounds: int, seed: int, resume: bool) -> list[str]:
    return [
        sys.executable, str(TRAIN_ADV), f"policy.model={shared.model_dir}", f"discriminator.name={shared.disc_dir}",
        f"deepspeed={DEEPSPEED_CONFIG}", f"output_dir={out}", f"mlflow_dir={store}", f"experiment={experiment}",
        f"rounds={rounds}", f"seed={seed}", *TINY_RUN, *(["--resume"] if resume else []),
    ]  # fmt: skip


def run_process(
    cmd: list[str], log: Path, env: dict, cwd: Path, limit: float, kill: tuple[str | None, float] | None = None
) -> dict:
    """Run ``cmd`` (its own process group) with its output timestamped into ``log``. ``kill`` = (anchor, seconds):
    SIGKILL the group that many seconds after it prints a line starting with ``anchor`` (after it starts, for
    None). Returns the exit code, whether it was killed, the seconds and the timed lines."""
    lines: list[tuple[float, str]] = []
    anchored = threading.Event()
    anchor_at = [0.0]
    started = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        if kill is not None and kill[0] is None:
            anchored.set()

        def read() -> None:
            for raw in proc.stdout:
                t = time.time() - started
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append((t, line))
                f.write(f"[{t:7.2f}] {line}\n")
                if kill is not None and not anchored.is_set() and line.startswith(kill[0]):
                    anchor_at[0] = t
                    anchored.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        killed = False
        while proc.poll() is None and time.time() - started < limit:
            if kill is not None and anchored.is_set() and time.time() - started >= anchor_at[0] + kill[1]:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this call started, by its id
                killed = True
                break
            time.sleep(0.01)
        if proc.poll() is None and not killed:  # past the limit
            os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        reader.join(10)
    return {"rc": rc, "killed": killed, "seconds": round(time.time() - started, 2), "lines": lines}


def plan_kill(u: float, times: dict[int, float], rounds: int, done: int | None, startup: float):
    """Where a kill drawn ``u`` seconds into an attempt's expected run time lands, as (anchor, seconds after it).

    The moment is placed on the unbroken run's clock (a resume skips the rounds up to its checkpoint ``done``, after
    a start-up of ``startup`` seconds), then tied to the last progress line before it (``round r:``, ``resumed
    from``, or the process start), so a slower or faster start does not move the kill to another phase."""
    if done is not None:
        if u < startup:
            return None, u
        t = times[done] + (u - startup)
    else:
        t = u
    seg = None  # the last round whose line comes before the moment
    for r in range(rounds):
        if t < times[r]:
            break
        seg = r
    if seg is None:
        return None, t
    anchor = "resumed from" if done is not None and seg <= done else f"round {seg}:"
    return anchor, t - times[seg]


def round_times(lines: list[tuple[float, str]]) -> dict[int, float]:
    """When each ``round r:`` line was printed (seconds since the process started)."""
    out = {}
    for t, line in lines:
        m = _ROUND_RE.match(line)
        if m:
            out.setdefault(int(m.group(1)), t)
    return out


def where_killed(lines: list[tuple[float, str]]) -> str:
    """The last thing the run printed before the kill (``startup`` if it printed nothing of its own yet)."""
    own = [line for _, line in lines if _ROUND_RE.match(line) or line.startswith("resumed from")]
    return own[-1][:60] if own else "startup (nothing logged yet)"


def log_tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:]


# ------------------------------------------------------------------------------------------------ checkpoints


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint ``folder`` does not load, or None: every file the trainer reads back is read here."""
    import torch
    from safetensors.torch import load_file

    from gan_cot.discriminator.checkpoint import validate_checkpoint

    try:
        state = json.loads((folder / "state.json").read_text())
        for key in ("round", "run_id", "best"):
            if key not in state:
                return f"state.json has no {key!r}"
        rng = json.loads((folder / "rng-0.json").read_text())
        if set(rng) != {"python", "numpy", "torch"}:
            return f"rng-0.json has keys {sorted(rng)}"
        json.loads((folder / "adapter" / "adapter_config.json").read_text())
        load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        validate_checkpoint(folder / "discriminator")
        load_file(str(folder / "discriminator" / "model.safetensors"))
        json.loads((folder / "discriminator" / "discriminator_card.json").read_text())
        engine_files = sorted((folder / "engine" / "state").glob("*.pt"))
        if not engine_files:
            return "engine/state holds no DeepSpeed state files"
        for f in engine_files:  # written by this very run, in its own temporary folder
            torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure to read is the finding
        return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return None


def inspect_checkpoints(out: Path) -> dict:
    """Corrupt checkpoints (by folder name, with the reason) and unfinished ``.tmp`` writes under ``out``."""
    root = out / "checkpoints"
    corrupt, tmp = {}, []
    if not root.is_dir():
        return {"corrupt": corrupt, "tmp": tmp, "latest": None, "rounds": []}
    latest = (root / "latest").read_text().strip() if (root / "latest").exists() else None
    if latest is not None and not (root / latest).is_dir():
        corrupt["latest"] = f"names {latest}, which does not exist"
    rounds = []
    for d in sorted(root.glob("round-*")):
        if d.name.endswith(".tmp"):
            tmp.append(d.name)
            continue
        rounds.append(d.name)
        problem = checkpoint_problem(d)
        if problem:
            corrupt[d.name] = problem
    return {"corrupt": corrupt, "tmp": tmp, "latest": latest, "rounds": rounds}


# ------------------------------------------------------------------------------------------------ MLflow


def experiment_runs(store: Path, experiment: str) -> list[dict]:
    """Every run of ``experiment``: id, status and metric histories {key: [(step, value), ...]}."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{store.resolve() / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = []
    for run in client.search_runs([exp.experiment_id]):
        history = {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics
        }
        runs.append({"run_id": run.info.run_id, "status": run.info.status, "metrics": history})
    return runs


def compare_runs(unbroken: dict, killed: dict, rounds: int) -> dict:
    """Differences between the unbroken run's metrics and the killed run's, and the killed run's round steps."""
    max_diff, max_dup, dups, problems = 0.0, 0.0, 0, []  # dups: (metric, step) pairs logged more than once
    for key, ref in unbroken["metrics"].items():
        got = killed["metrics"].get(key)
        if got is None:
            problems.append(f"metric {key} missing from the killed run")
            continue
        ref_by_step = {}
        for step, value in ref:
            ref_by_step.setdefault(step, value)
        got_by_step: dict[int, list[float]] = {}
        for step, value in got:
            got_by_step.setdefault(step, []).append(value)
        if set(got_by_step) != set(ref_by_step):
            problems.append(f"metric {key}: steps {sorted(got_by_step)} vs {sorted(ref_by_step)} in the unbroken run")
        for step, values in got_by_step.items():
            if len(values) > 1:
                dups += 1
                spread = max(values) - min(values)
                max_dup = max(max_dup, spread)
                if not all(close(values[0], v) for v in values):
                    problems.append(f"metric {key} step {step} logged {len(values)} times with different values")
            if step in ref_by_step:
                for v in values:
                    diff = abs(v - ref_by_step[step])
                    max_diff = max(max_diff, diff)
                    if not close(ref_by_step[step], v):
                        problems.append(f"metric {key} step {step}: {v} vs {ref_by_step[step]} unbroken")
    round_steps = [s for s, _ in killed["metrics"].get("rollout_tokens", [])]  # logged once per round
    steps = sorted(set(round_steps))
    if steps != list(range(rounds)):
        problems.append(f"round steps logged {steps}, expected 0..{rounds - 1}")
    again = sorted({s for s in round_steps if round_steps.count(s) > 1})
    return {"max_diff": max_diff, "max_duplicate_diff": max_dup, "duplicates": dups, "steps": steps,
            "rounds_logged_twice": again, "problems": problems}  # fmt: skip


# ------------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kills", type=int, default=5, help="how many times to SIGKILL the run (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments and of the training run")
    p.add_argument("--rounds", type=int, default=6, help="rounds of the tiny run (default 6)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every run (the same for all)")
    p.add_argument(
        "--first-kill-on", default=None, metavar="TEXT",
        help="kill the first attempt as soon as it prints a line starting with TEXT (e.g. 'round 0:', printed "
        "after the round's metrics are logged and before its checkpoint), instead of at a drawn moment",
    )  # fmt: skip
    p.add_argument("--workdir", default=None, help="keep everything in this new folder (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    if args.kills < 0 or args.rounds < 1:
        print("error: --kills must be >= 0 and --rounds >= 1", file=sys.stderr)
        return 2

    started = time.time()
    if args.workdir:
        root = Path(args.workdir)
        root.mkdir(parents=True, exist_ok=False)
    else:
        root = Path(tempfile.mkdtemp(prefix="gan-cot-chaos-"))
    store = root / "mlruns"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONHASHSEED": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    # a single-process run sets these in its own environment; a child must pick a fresh rendezvous
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    problems: list[str] = []
    try:
        import contextlib
        import io

        from gan_cot.testing.bad_inputs import build_shared

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            shared = build_shared(root / "models")

        # 1. the unbroken run: the reference metrics and the expected run time T
        ref_out = root / "unbroken"
        cmd = train_cmd(shared, ref_out, store, "chaos-unbroken", args.rounds, args.seed, resume=False)
        ref = run_process(cmd, root / "unbroken.log", env, root, limit=1800)
        if ref["rc"] != 0:
            raise SystemExit(f"error: the unbroken run failed (exit {ref['rc']}):\n{log_tail(root / 'unbroken.log')}")
        expected = ref["seconds"]
        times = round_times(ref["lines"])
        if sorted(times) != list(range(args.rounds)):
            raise SystemExit(
                f"error: the unbroken run logged rounds {sorted(times)}:\n{log_tail(root / 'unbroken.log')}"
            )
        # startup: until round 0 began (one round's time before its line)
        one_round = times[1] - times[0] if args.rounds > 1 else times[0] / 2
        startup = max(0.0, times[0] - one_round)
        print(f"unbroken run: {expected:.1f} s (startup {startup:.1f} s, rounds at "
              f"{', '.join(f'{t:.1f}' for t in times.values())} s)", flush=True)  # fmt: skip

        # 2. the killed run: each attempt is killed at a moment drawn uniformly within its expected run time
        rng = random.Random(args.seed)
        out = root / "killed"
        kill_log, corrupt = [], {}
        kills = resumed = 0
        completed = False
        attempt = 0
        for _ in range(args.kills):
            latest = inspect_checkpoints(out)["latest"]
            done = int(latest.split("-")[1]) if latest else None
            if done not in times:
                done = None
            # the attempt's expected run time: the unbroken run's, or for a resume its start-up plus the unbroken
            # run's time from the round of its checkpoint to the end
            budget = expected if done is None else startup + (expected - times[done])
            delay = round(rng.uniform(0, budget), 2)
            plan = plan_kill(delay, times, args.rounds, done, startup)
            if attempt == 0 and args.first_kill_on is not None:
                plan = (args.first_kill_on, 0.0)
            cmd = train_cmd(shared, out, store, "chaos-killed", args.rounds, args.seed, resume=attempt > 0)
            resumed += attempt > 0
            log = root / f"attempt-{attempt}.log"
            res = run_process(cmd, log, env, root, limit=1800, kill=plan)
            logged = sorted(round_times(res["lines"]))
            state = inspect_checkpoints(out)
            for name, why in state["corrupt"].items():
                corrupt.setdefault(name, why)
            where = f"{plan[1]:.1f} s after " + (repr(plan[0]) if plan[0] else "start")
            entry = {"attempt": attempt, "resume": attempt > 0, "expected_s": round(budget, 2), "drawn_s": delay,
                     "kill_at": where, "killed": res["killed"], "exit": res["rc"],
                     "last_logged": where_killed(res["lines"]),
                     "rounds_logged": logged, "latest": state["latest"], "checkpoints": state["rounds"],
                     "tmp": state["tmp"]}  # fmt: skip
            kill_log.append(entry)
            drawn = f"drawn {delay:.1f} of {budget:.1f} s: {where}"
            print(f"attempt {attempt}: " + ("killed" if res["killed"] else f"exited {res['rc']}")
                  + f" after {res['seconds']:.1f} s ({drawn}) at {entry['last_logged']!r}; "
                  f"latest {state['latest']}; corrupt {sorted(state['corrupt']) or 'none'}", flush=True)  # fmt: skip
            attempt += 1
            if res["killed"]:
                kills += 1
                continue
            if res["rc"] == 0:
                completed = True
            else:
                problems.append(f"attempt {entry['attempt']} failed (exit {res['rc']}): {log_tail(log, 1500)}")
            break
        if not completed and not problems:
            cmd = train_cmd(shared, out, store, "chaos-killed", args.rounds, args.seed, resume=attempt > 0)
            resumed += attempt > 0
            log = root / f"attempt-{attempt}.log"
            res = run_process(cmd, log, env, root, limit=1800)
            completed = res["rc"] == 0
            kill_log.append({"attempt": attempt, "resume": attempt > 0, "killed": False, "exit": res["rc"]})
            print(f"attempt {attempt}: exited {res['rc']} after {res['seconds']:.1f} s", flush=True)
            if not completed:
                problems.append(f"the final resume failed (exit {res['rc']}): {log_tail(log, 1500)}")
        final_state = inspect_checkpoints(out)
        for name, why in final_state["corrupt"].items():
            corrupt.setdefault(name, why)
        if final_state["tmp"]:
            problems.append(f"unfinished checkpoint writes left after the run completed: {final_state['tmp']}")
        if corrupt:
            problems.append(f"corrupt checkpoints: {corrupt}")

        # 3. results and MLflow
        max_diff = None
        mlflow_runs = None
        cmp = {"duplicates": 0, "max_duplicate_diff": 0.0, "steps": [], "rounds_logged_twice": []}
        if completed:
            a = json.loads((ref_out / "result.json").read_text())
            b = json.loads((out / "result.json").read_text())
            final_diffs = []
            for key in RESULT_KEYS:
                if a.get(key) is None or b.get(key) is None:
                    if a.get(key) != b.get(key):
                        problems.append(f"result {key}: {b.get(key)} vs {a.get(key)} unbroken")
                    continue
                final_diffs.append(abs(a[key] - b[key]))
                if not close(a[key], b[key]):
                    problems.append(f"result {key}: {b[key]} vs {a[key]} unbroken")
            ref_runs = experiment_runs(store, "chaos-unbroken")
            runs = experiment_runs(store, "chaos-killed")
            mlflow_runs = len(runs)
            if len(runs) != 1:
                problems.append(
                    f"the killed run's experiment holds {len(runs)} MLflow runs, expected 1: "
                    + ", ".join(f"{r['run_id']} ({r['status']}, rounds "
                                f"{sorted({s for s, _ in r['metrics'].get('rollout_tokens', [])})})" for r in runs)
                )  # fmt: skip
            main_run = next((r for r in runs if r["run_id"] == b["run_id"]), None)
            if main_run is None:
                problems.append(f"result.json's run {b['run_id']} is not in MLflow")
            elif len(ref_runs) == 1:
                cmp = compare_runs(ref_runs[0], main_run, args.rounds)
                problems += cmp["problems"]
                max_diff = max([cmp["max_diff"], *final_diffs])
            else:
                problems.append(f"the unbroken experiment holds {len(ref_runs)} runs")
        else:
            problems.append("the run did not complete")
        summary = {
            "kills": kills,
            "kills_requested": args.kills,
            "resumed": resumed,
            "completed": completed,
            "max_metric_diff": max_diff,
            "tolerance": f"{REL_TOL} * max(1, |value|)",
            "corrupt_checkpoints": len(corrupt),
            "mlflow_runs": mlflow_runs,
            "rounds_logged": cmp["steps"],
            "rounds_logged_twice": cmp["rounds_logged_twice"],
            "duplicate_logs": cmp["duplicates"],
            "max_duplicate_diff": cmp["max_duplicate_diff"],
            "unbroken_seconds": expected,
            "seed": args.seed,
            "rounds": args.rounds,
            "attempts": kill_log,
            "problems": problems,
            "ok": not problems,
            "wall_seconds": round(time.time() - started, 1),
        }
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print(
            f"kills {kills}, resumed {resumed}, completed {completed}, max_metric_diff {max_diff}, "
            f"corrupt_checkpoints {len(corrupt)}, mlflow_runs {mlflow_runs}: " + ("ok" if not problems else "FAILED")
        )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
