"""The commands as modules, by the name of their file under scripts/ (``command("train_adv").main(argv)``)."""

import importlib


def command(name: str):
    """``gan_cot.commands.NAME``, else ``gan_cot_lab.commands.NAME``."""
    for package in ("gan_cot.commands", "gan_cot_lab.commands"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise
    raise ModuleNotFoundError(f"no command {name} in gan_cot.commands or gan_cot_lab.commands")
