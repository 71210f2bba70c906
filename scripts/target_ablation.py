"""``python scripts/target_ablation.py ARGS``: the command ``gan_cot_lab.commands.target_ablation`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.target_ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
