"""``python scripts/gpu_smoke.py ARGS``: the command ``gan_cot_lab.commands.gpu_smoke`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.gpu_smoke import main

if __name__ == "__main__":
    raise SystemExit(main())
