"""``python scripts/bench.py ARGS``: the command ``gan_cot_lab.commands.bench`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
