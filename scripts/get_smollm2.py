"""``python scripts/get_smollm2.py ARGS``: the command ``gan_cot.commands.get_smollm2`` (its code and ``--help`` are there)."""

from gan_cot.commands.get_smollm2 import main

if __name__ == "__main__":
    raise SystemExit(main())
