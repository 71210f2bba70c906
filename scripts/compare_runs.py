"""``python scripts/compare_runs.py ARGS``: the command ``gan_cot_lab.commands.compare_runs`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.compare_runs import main

if __name__ == "__main__":
    raise SystemExit(main())
