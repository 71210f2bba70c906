"""``python scripts/evaluate_discriminator.py ARGS``: the command ``gan_cot.commands.evaluate_discriminator`` (its code and ``--help`` are there)."""

from gan_cot.commands.evaluate_discriminator import main

if __name__ == "__main__":
    raise SystemExit(main())
