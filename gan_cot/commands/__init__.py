"""The library's commands, each a module with ``main(argv=None) -> int``: the console scripts of
``[project.scripts]`` (``gan-cot-train``, ``gan-cot-evaluate`` ...) call them, and so do the few-line files under
``scripts/`` (``deepspeed scripts/train_adv.py`` keeps working in a checkout)."""
