"""``python scripts/rollout_time.py ARGS``: the command ``gan_cot_lab.commands.rollout_time`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.rollout_time import main

if __name__ == "__main__":
    raise SystemExit(main())
