"""``python scripts/shrink_backbone.py ARGS``: the command ``gan_cot.commands.shrink_backbone`` (its code and ``--help`` are there)."""

from gan_cot.commands.shrink_backbone import main

if __name__ == "__main__":
    raise SystemExit(main())
