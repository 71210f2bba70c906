"""A training run that stops on an error is marked FAILED in MLflow and left out of compare_runs.py."""

import pytest
from commands import command as load_script


def test_a_failed_run_is_marked_failed_and_left_out_of_the_comparison(tmp_path, tiny_config, monkeypatch):
    import mlflow

    from gan_cot.trainer import AdversarialTrainer

    trainer = AdversarialTrainer(tiny_config(tmp_path), log=lambda m: None)

    def crash(r):
        raise IndexError("index out of range in self")  # what a discriminator past its vocabulary raised

    monkeypatch.setattr(trainer, "run_round", crash)
    with pytest.raises(IndexError):
        trainer.train()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert mlflow.get_run(trainer.run_id).info.status == "FAILED"
    compare = load_script("compare_runs")
    experiment = compare.open_experiment("gan-cot", str(tmp_path / "mlruns"))
    assert compare.collect_runs(experiment.experiment_id) == []
