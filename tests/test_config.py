"""Configs: YAML + overrides, refusals that name the key, and every YAML under configs/ loads."""

from pathlib import Path

import pytest
import yaml

from gan_cot.config_loader import ConfigError, load_config
from gan_cot.discriminator.config import DiscriminatorTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 10\nlr: 0.01\n")
    cfg = load_config(DiscriminatorTrainConfig, f, ["steps=20", "name=x"])
    assert cfg.steps == 20 and cfg.lr == 0.01 and cfg.name == "x"
    cfg = load_config(DiscriminatorTrainConfig, f, ["lr=5e-4"])  # YAML 1.1 reads this as a string
    assert cfg.lr == 5e-4
    with pytest.raises(ConfigError, match="lr: expected a number, got 'fast'"):
        load_config(DiscriminatorTrainConfig, f, ["lr=fast"])


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("stepz: 10\n", [], "unknown key 'stepz'; allowed keys: task,"),
        ("steps: ten\n", [], "steps: expected an integer, got 'ten'"),
        ("", ["batch_size=-4"], "batch_size must be positive, got -4"),
        ("", ["task=nope"], "task: 'nope' has no step-labeled data"),
        ("steps: [1\n", [], "bad.yaml:2: not valid YAML"),
        ("- 1\n", [], "top level must be a mapping"),
        ("", ["steps"], "is not key=value"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(DiscriminatorTrainConfig, f, overrides)
    assert message in str(e.value)


def test_every_yaml_under_configs_loads():
    from gan_cot.config_loader import from_dict
    from gan_cot.trainer_config import AdversarialConfig
    from gan_cot_lab.baselines.config import BaselineConfig

    kinds = {"discriminator": DiscriminatorTrainConfig, "configs": AdversarialConfig, "baselines": BaselineConfig}
    found = 0
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and ("python" in first or "deepspeed" in first), (
            f"{path} must open with its command"
        )
        cls = kinds.get(path.parent.name)
        if cls is None:
            continue
        from_dict(cls, yaml.safe_load(path.read_text()) or {}, str(path))
        found += 1
    assert found >= 11
    for path in sorted((ROOT / "configs" / "deepspeed").glob("*.json")):
        import json

        assert "zero_optimization" in json.loads(path.read_text())


def test_every_scoring_setting_is_a_training_key():
    """Each key a discriminator card can hold (the layout's scoring settings) can be set for a run."""
    from gan_cot.config_loader import load_config
    from gan_cot.discriminator.card import SETTINGS
    from gan_cot.discriminator.model import settings_of
    from gan_cot.trainer_config import AdversarialConfig

    cfg = load_config(AdversarialConfig, None, ["discriminator.max_length=64", "discriminator.separator=||"])
    got = settings_of(cfg.discriminator)
    assert set(got) == set(SETTINGS) and got["max_length"] == 64 and got["separator"] == "||"
    with pytest.raises(ConfigError, match="discriminator.max_length must be positive"):
        load_config(AdversarialConfig, None, ["discriminator.max_length=0"])
