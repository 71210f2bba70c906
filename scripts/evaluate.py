"""``python scripts/evaluate.py ARGS``: the command ``gan_cot.commands.evaluate`` (its code and ``--help`` are there)."""

from gan_cot.commands.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
