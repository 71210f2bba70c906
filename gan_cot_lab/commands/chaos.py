"""Kill the adversarial trainer at random moments, resume it each time, and check that nothing was lost
(see :mod:`gan_cot_lab.reliability.chaos` for how the kills are placed and what is checked).

    python scripts/chaos.py                       # 5 kills, seed 0, a tiny policy and discriminator, 6 rounds
    python scripts/chaos.py --kills 3 --seed 1 --rounds 4 --json

The last line is one JSON object: kills, resumed, completed, max_metric_diff, corrupt_checkpoints, wall_seconds,
and the details (``problems`` lists every failed check; exit code 1 when there is one).
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.usage import fail, print_json


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
        fail("--kills must be >= 0 and --rounds >= 1")
    from gan_cot_lab.reliability.chaos import ChaosError, run_chaos

    try:
        summary = run_chaos(
            kills=args.kills, seed=args.seed, rounds=args.rounds, threads=args.threads,
            first_kill_on=args.first_kill_on, workdir=args.workdir, log=lambda m: print(m, flush=True),
        )  # fmt: skip
    except ChaosError as e:
        fail(str(e), code=1)
    for problem in summary["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print(
            f"kills {summary['kills']}, resumed {summary['resumed']}, completed {summary['completed']}, "
            f"max_metric_diff {summary['max_metric_diff']}, corrupt_checkpoints {summary['corrupt_checkpoints']}, "
            f"mlflow_runs {summary['mlflow_runs']}: " + ("ok" if summary["ok"] else "FAILED")
        )
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
