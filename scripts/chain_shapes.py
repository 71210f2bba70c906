"""``python scripts/chain_shapes.py ARGS``: the command ``gan_cot_lab.commands.chain_shapes`` (its code and ``--help`` are there)."""

from gan_cot_lab.commands.chain_shapes import main

if __name__ == "__main__":
    raise SystemExit(main())
