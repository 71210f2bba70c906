"""``python scripts/backoff_kinds.py ARGS``: the command ``gan_cot_lab.commands.backoff_kinds`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.backoff_kinds import main

if __name__ == "__main__":
    raise SystemExit(main())
