"""``python scripts/label_agreement.py ARGS``: the command ``gan_cot_lab.commands.label_agreement`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.label_agreement import main

if __name__ == "__main__":
    raise SystemExit(main())
