"""``python scripts/train_adv.py ARGS``: the command ``gan_cot.commands.train_adv`` (its code and ``--help`` are there)."""

from gan_cot.commands.train_adv import main

if __name__ == "__main__":
    raise SystemExit(main())
