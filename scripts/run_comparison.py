"""``python scripts/run_comparison.py ARGS``: the command ``gan_cot_lab.commands.run_comparison`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.run_comparison import main

if __name__ == "__main__":
    raise SystemExit(main())
