"""Kill the adversarial trainer at random moments, resume it each time, and check that nothing was lost.

First an unbroken run of ``scripts/train_adv.py`` (one process, no launcher) on a tiny policy and discriminator
built into a temporary folder, with a checkpoint every round, measures the expected run time T. Then the same
run (same seed, its own output folder and MLflow experiment in the same SQLite store) is started, killed with
SIGKILL (the whole process group) at a moment drawn uniformly (seeded by ``seed``) within the attempt's
expected run time, and started again with ``--resume``, ``kills`` times; the last resume runs to the end.
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

:func:`run_chaos` returns the summary: kills, resumed, completed, max_metric_diff, corrupt_checkpoints,
wall_seconds, and the details (``problems`` lists every failed check).
"""

from __future__ import annotations

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
from collections.abc import Callable
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot_lab.reliability.checks import REL_TOL, compare_with_unbroken, inspect_checkpoints, not_compared
from gan_cot_lab.reliability.tiny import build_tiny_pair

TRAIN_ADV = REPO_ROOT / "scripts" / "train_adv.py"
DEEPSPEED_CONFIG = REPO_ROOT / "configs" / "deepspeed" / "zero0.json"
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"  # a checkpoint every round
SHORTER = ("rollout.max_think_tokens=12", "eval.n=2")  # the tiny run, shorter still
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_ROUND_RE = re.compile(r"^round (\d+): ")


class ChaosError(RuntimeError):
    """The unbroken run, the reference of every check, failed; the message holds its log's tail."""


def train_cmd(
    model_dir: Path, disc_dir: Path, out: Path, store: Path, experiment: str, rounds: int, seed: int, resume: bool
) -> list[str]:
    return [
        sys.executable, str(TRAIN_ADV), "--config", str(TINY_CONFIG), f"model={model_dir}",
        f"discriminator.name={disc_dir}", f"deepspeed={DEEPSPEED_CONFIG}", f"output_dir={out}", f"mlflow_dir={store}",
        f"experiment={experiment}", f"rounds={rounds}", f"seed={seed}", *SHORTER, *(["--resume"] if resume else []),
    ]  # fmt: skip


def child_env(threads: int) -> dict:
    """The environment of every run: fixed threads and hash seed, no outside MLflow store, no launcher state."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # a single-process run sets these in its own environment; a child must pick a fresh rendezvous
    for key in LAUNCHER_VARIABLES:
        env.pop(key, None)
    return env


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
                # a progress bar redraws its line with carriage returns: what the line says last is what counts
                line = raw.decode(errors="replace").rstrip("\n").rsplit("\r", 1)[-1]
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


# ------------------------------------------------------------------------------------------------ the run


def run_chaos(
    kills: int = 5,
    seed: int = 0,
    rounds: int = 6,
    threads: int = 2,
    first_kill_on: str | None = None,
    workdir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """The unbroken run, then the killed and resumed one, then the checks; returns the summary (``ok`` when
    ``problems`` is empty). ``first_kill_on`` kills the first attempt as soon as it prints a line starting with
    it instead of at a drawn moment. Everything is written under ``workdir`` (a new folder, kept) or a temporary
    folder (removed). Raises :class:`ChaosError` when the unbroken run fails, ValueError on bad arguments."""
    if kills < 0 or rounds < 1:
        raise ValueError(f"kills must be >= 0 and rounds >= 1, got {kills} and {rounds}")
    started = time.time()
    if workdir:
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=False)
    else:
        root = Path(tempfile.mkdtemp(prefix="gan-cot-chaos-"))
    store = root / "mlruns"
    env = child_env(threads)
    try:
        model_dir, disc_dir = build_tiny_pair(root / "models")

        def cmd(out: Path, experiment: str, resume: bool) -> list[str]:
            return train_cmd(model_dir, disc_dir, out, store, experiment, rounds, seed, resume)

        # 1. the unbroken run: the reference metrics and the expected run time T
        ref_out = root / "unbroken"
        ref = run_process(cmd(ref_out, "chaos-unbroken", False), root / "unbroken.log", env, root, limit=1800)
        if ref["rc"] != 0:
            raise ChaosError(f"the unbroken run failed (exit {ref['rc']}):\n{log_tail(root / 'unbroken.log')}")
        expected = ref["seconds"]
        times = round_times(ref["lines"])
        if sorted(times) != list(range(rounds)):
            raise ChaosError(f"the unbroken run logged rounds {sorted(times)}:\n{log_tail(root / 'unbroken.log')}")
        # startup: until round 0 began (one round's time before its line)
        one_round = times[1] - times[0] if rounds > 1 else times[0] / 2
        startup = max(0.0, times[0] - one_round)
        log(f"unbroken run: {expected:.1f} s (startup {startup:.1f} s, rounds at "
            f"{', '.join(f'{t:.1f}' for t in times.values())} s)")  # fmt: skip

        # 2. the killed run: each attempt is killed at a moment drawn uniformly within its expected run time
        rng = random.Random(seed)
        out = root / "killed"
        problems: list[str] = []
        kill_log, corrupt = [], {}
        n_killed = resumed = 0
        completed = False
        attempt = 0
        for _ in range(kills):
            latest = inspect_checkpoints(out)["latest"]
            done = int(latest.split("-")[1]) if latest else None
            if done not in times:
                done = None
            # the attempt's expected run time: the unbroken run's, or for a resume its start-up plus the unbroken
            # run's time from the round of its checkpoint to the end
            budget = expected if done is None else startup + (expected - times[done])
            delay = round(rng.uniform(0, budget), 2)
            plan = plan_kill(delay, times, rounds, done, startup)
            if attempt == 0 and first_kill_on is not None:
                plan = (first_kill_on, 0.0)
            resumed += attempt > 0
            attempt_log = root / f"attempt-{attempt}.log"
            res = run_process(cmd(out, "chaos-killed", attempt > 0), attempt_log, env, root, limit=1800, kill=plan)
            state = inspect_checkpoints(out)
            for name, why in state["corrupt"].items():
                corrupt.setdefault(name, why)
            where = f"{plan[1]:.1f} s after " + (repr(plan[0]) if plan[0] else "start")
            entry = {"attempt": attempt, "resume": attempt > 0, "expected_s": round(budget, 2), "drawn_s": delay,
                     "kill_at": where, "killed": res["killed"], "exit": res["rc"],
                     "last_logged": where_killed(res["lines"]), "rounds_logged": sorted(round_times(res["lines"])),
                     "latest": state["latest"], "checkpoints": state["rounds"], "tmp": state["tmp"]}  # fmt: skip
            kill_log.append(entry)
            drawn = f"drawn {delay:.1f} of {budget:.1f} s: {where}"
            log(f"attempt {attempt}: " + ("killed" if res["killed"] else f"exited {res['rc']}")
                + f" after {res['seconds']:.1f} s ({drawn}) at {entry['last_logged']!r}; "
                f"latest {state['latest']}; corrupt {sorted(state['corrupt']) or 'none'}")  # fmt: skip
            attempt += 1
            if res["killed"]:
                n_killed += 1
                continue
            if res["rc"] == 0:
                completed = True
            else:
                problems.append(f"attempt {attempt - 1} failed (exit {res['rc']}): {log_tail(attempt_log, 1500)}")
            break
        if not completed and not problems:
            resumed += attempt > 0
            attempt_log = root / f"attempt-{attempt}.log"
            res = run_process(cmd(out, "chaos-killed", attempt > 0), attempt_log, env, root, limit=1800)
            completed = res["rc"] == 0
            kill_log.append({"attempt": attempt, "resume": attempt > 0, "killed": False, "exit": res["rc"]})
            log(f"attempt {attempt}: exited {res['rc']} after {res['seconds']:.1f} s")
            if not completed:
                problems.append(f"the final resume failed (exit {res['rc']}): {log_tail(attempt_log, 1500)}")
        final_state = inspect_checkpoints(out)
        for name, why in final_state["corrupt"].items():
            corrupt.setdefault(name, why)
        if final_state["tmp"]:
            problems.append(f"unfinished checkpoint writes left after the run completed: {final_state['tmp']}")
        if corrupt:
            problems.append(f"corrupt checkpoints: {corrupt}")

        # 3. results and MLflow
        found = compare_with_unbroken(ref_out, out, store, rounds) if completed else not_compared()
        problems += found["problems"] if completed else ["the run did not complete"]
        cmp = found["cmp"]
        return {
            "kills": n_killed,
            "kills_requested": kills,
            "resumed": resumed,
            "completed": completed,
            "max_metric_diff": found["max_diff"],
            "tolerance": f"{REL_TOL} * max(1, |value|)",
            "corrupt_checkpoints": len(corrupt),
            "mlflow_runs": found["mlflow_runs"],
            "rounds_logged": cmp["steps"],
            "rounds_logged_twice": cmp["rounds_logged_twice"],
            "duplicate_logs": cmp["duplicates"],
            "max_duplicate_diff": cmp["max_duplicate_diff"],
            "unbroken_seconds": expected,
            "seed": seed,
            "rounds": rounds,
            "attempts": kill_log,
            "problems": problems,
            "ok": not problems,
            "wall_seconds": round(time.time() - started, 1),
        }
    finally:
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)
