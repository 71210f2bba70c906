"""Every MLflow call of a training run: one MLflow run per training run, resumed with it, marked FAILED when it
stops on an error. Only the main process logs; on the others every method does nothing."""

from __future__ import annotations

import json
from pathlib import Path

from gan_cot.checkpoint import write_json
from gan_cot.steps import LABELS


class RunLogger:
    def __init__(self, cfg, out: Path, active: bool, log=print):
        self.cfg = cfg
        self.out = Path(out)
        self.active = active
        self.log = log
        self.run_id: str | None = None

    def start(self, run_id: str | None, resume: bool, method: str) -> str | None:
        """Open the run: the checkpoint's run id, else (``resume`` after a kill before the first checkpoint) the one
        ``mlflow_run.json`` names, else a new run with the config as params and artifact and the ``method`` tag."""
        if not self.active:
            return run_id
        import mlflow

        from gan_cot import tracking
        from gan_cot.config import to_dict

        tracking.setup(self.cfg.experiment, self.cfg.mlflow_dir)
        run_file = self.out / "mlflow_run.json"
        if resume and run_id is None and run_file.exists():
            run_id = json.loads(run_file.read_text())["run_id"]
        new = run_id is None
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run()
        self.run_id = run.info.run_id
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(run_file, {"run_id": self.run_id})
        if new:
            mlflow.log_params(tracking.flatten(to_dict(self.cfg)))
            mlflow.set_tag("method", method)
            write_json(self.out / "config.json", to_dict(self.cfg), indent=2)
            mlflow.log_artifact(str(self.out / "config.json"))
        return self.run_id

    def metrics(self, metrics: dict, step: int | None = None, prefix: str = "") -> None:
        if self.active and metrics:
            import mlflow

            mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=step)

    def round(self, r: int, metrics: dict) -> None:
        """A round's metrics at step ``r``, and one line on the console."""
        if self.active:
            self.metrics(metrics, step=r)
            self.log(f"round {r}: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items())))

    def samples(self, r: int, rollout, scores) -> None:
        """Up to 16 chains of a round, one row per step with the discriminator's probabilities."""
        if not self.active:
            return
        import mlflow

        rows = []
        for c, probs in list(zip(rollout.chains, scores.probs))[:16]:
            probs = probs.tolist() if probs is not None else [[]] * len(c.steps)
            for i, (step, p) in enumerate(zip(c.steps, probs)):
                rows.append({"round": r, "example": c.example_index, "step": i, "text": step, "correct": c.correct,
                             **{lab: (p[k] if p else None) for k, lab in enumerate(LABELS)}})  # fmt: skip
                if c.alpha is not None:
                    rows[-1]["alpha"] = c.alpha
        if rows:
            keys = list(dict.fromkeys(k for row in rows for k in row))
            mlflow.log_table(
                {k: [row.get(k) for row in rows] for k in keys}, artifact_file=f"samples/round-{r:05d}.json"
            )

    def finish(self, final: dict, adapter: Path) -> None:
        if not self.active:
            return
        import mlflow

        self.metrics({k: v for k, v in final.items() if isinstance(v, float)}, prefix="final_")
        mlflow.log_artifacts(str(adapter), artifact_path="adapter")
        mlflow.end_run()

    def fail(self) -> None:
        """Close the run as FAILED (a run stopped by an error is left out of comparisons)."""
        if self.active and self.run_id is not None:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")
