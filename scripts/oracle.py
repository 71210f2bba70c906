"""``python scripts/oracle.py ARGS``: the command ``gan_cot_lab.commands.oracle`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.oracle import main

if __name__ == "__main__":
    raise SystemExit(main())
