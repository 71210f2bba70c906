"""``python scripts/train_baseline.py ARGS``: the command ``gan_cot_lab.commands.train_baseline`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.train_baseline import main

if __name__ == "__main__":
    raise SystemExit(main())
