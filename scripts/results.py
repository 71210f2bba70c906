"""``python scripts/results.py ARGS``: the command ``gan_cot_lab.commands.results`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.results import main

if __name__ == "__main__":
    raise SystemExit(main())
