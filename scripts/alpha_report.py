"""``python scripts/alpha_report.py ARGS``: the command ``gan_cot.commands.alpha_report`` (its code and ``--help`` are there)."""

from gan_cot.commands.alpha_report import main

if __name__ == "__main__":
    raise SystemExit(main())
