"""``python scripts/prepare_base.py ARGS``: the command ``gan_cot_lab.commands.prepare_base`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.prepare_base import main

if __name__ == "__main__":
    raise SystemExit(main())
