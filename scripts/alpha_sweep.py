"""``python scripts/alpha_sweep.py ARGS``: the command ``gan_cot.commands.alpha_sweep`` (its code and ``--help`` are there)."""

from gan_cot.commands.alpha_sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
