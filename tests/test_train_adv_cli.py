"""scripts/train_adv.py's own answers: --help names where the keys are, --dry-run sizes the run this machine would
make, and --resume refuses another recipe and records a changed number of rounds."""

import json
from pathlib import Path

import pytest

from gan_cot.usage import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    from commands import command

    module = command("train_adv")
    return module


def test_help_lists_the_keys_and_where_each_is_described(capsys):
    with pytest.raises(SystemExit) as e:
        _load_script().main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "rounds (default 20)" in out and "policy (default '(see class)')" in out
    assert "gan_cot/trainer_config.py" in out and "gan_cot/run_config.py" in out


def test_dry_run_on_a_cpu_says_cpu_and_float32_and_with_gpus_sizes_a_gpu_run(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    script = _load_script()
    assert script.main(["--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    e = json.loads(out[-1])
    assert e["device"] == "cpu" and e["dtype"] == "float32"
    (zero,) = [line for line in out if line.startswith("ZeRO stage")]
    assert "on the CPU" in zero and "float32" in zero and "GPU(s)" not in zero
    assert script.main(["--dry-run", "--gpus", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    e = json.loads(out[-1])
    assert (
        e["device"] == "cuda"
        and e["dtype"] == "bfloat16"
        and any(line.startswith("ZeRO stage 0 on 2 GPU(s), bfloat16") for line in out)
    )


@pytest.fixture()
def resumable(tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch):
    """The argv of a tiny run whose output folder holds its config.json and MLflow run, as a started run leaves them."""
    import mlflow

    from gan_cot import tracking
    from gan_cot.config_loader import load_config, to_dict
    from gan_cot.trainer_config import AdversarialConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["--config", str(ROOT / "configs/tiny.yaml"), f"model={tiny_model_dir}", f"discriminator.name={tiny_disc_dir}",
            f"output_dir={tmp_path / 'out'}", f"mlflow_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    cfg = load_config(AdversarialConfig, argv[1], argv[2:])
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    tracking.setup(cfg.experiment, cfg.mlflow_dir)
    with mlflow.start_run() as run:
        pass
    (out / "mlflow_run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    return {"argv": argv, "cfg": cfg, "run_id": run.info.run_id, "out": out}


def test_resume_with_another_config_names_what_differs(resumable, capsys):
    script = _load_script()
    with pytest.raises(SystemExit) as e:
        script.main([*resumable["argv"], "--resume", "lora.r=8", "policy.lr=0.5"])
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --resume: the config differs from the run's")
    assert f"lora.r {resumable['cfg'].lora.r} -> 8" in line and "policy.lr" in line and "output_dir=" in line
    assert "delete" not in line


def test_a_resume_that_changes_rounds_records_it(resumable, capsys):
    import mlflow

    from gan_cot.config_loader import load_config
    from gan_cot.trainer_config import AdversarialConfig

    script = _load_script()
    cfg = load_config(AdversarialConfig, resumable["argv"][1], [*resumable["argv"][2:], "rounds=5"])
    assert script.resume_changes(resumable["cfg"]) == {}  # the same config: nothing to say
    changes = script.resume_changes(cfg)
    assert changes == {"rounds": ("2", "5")}
    script.record_resume_changes(cfg, changes, print)
    assert "resume changes rounds 2 -> 5" in capsys.readouterr().out
    assert json.loads((resumable["out"] / "config.json").read_text())["rounds"] == 5
    tags = mlflow.MlflowClient().get_run(resumable["run_id"]).data.tags
    assert tags["resumed.rounds"] == "2 -> 5"


def test_a_key_newer_than_the_run_at_its_default_is_no_change(resumable):
    """A run written before a key existed did what the key's default does: resuming it is not another recipe; the key
    at another value still is."""
    from gan_cot.config_loader import load_config
    from gan_cot.trainer_config import AdversarialConfig

    script = _load_script()
    path = resumable["out"] / "config.json"
    old = json.loads(path.read_text())
    del old["gate"]["select"], old["discriminator"]["max_length"]
    path.write_text(json.dumps(old))
    assert script.resume_changes(resumable["cfg"]) == {}
    cfg = load_config(AdversarialConfig, resumable["argv"][1], [*resumable["argv"][2:], "discriminator.max_length=64"])
    with pytest.raises(UsageError, match="discriminator.max_length - -> 64"):
        script.resume_changes(cfg)
