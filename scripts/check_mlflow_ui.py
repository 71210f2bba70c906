"""``python scripts/check_mlflow_ui.py ARGS``: the command ``gan_cot_lab.commands.check_mlflow_ui`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.check_mlflow_ui import main

if __name__ == "__main__":
    raise SystemExit(main())
