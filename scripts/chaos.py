"""``python scripts/chaos.py ARGS``: the command ``gan_cot_lab.commands.chaos`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.chaos import main

if __name__ == "__main__":
    raise SystemExit(main())
