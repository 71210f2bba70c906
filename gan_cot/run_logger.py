"""Every MLflow call of a training run: one MLflow run per training run, resumed with it, marked FAILED when it
stops on an error. Only the main process logs; on the others every method does nothing.

What a user sees in the MLflow UI: the run is named by method and seed (``gan-cot-seed0``), its inputs are the
task's splits (:func:`gan_cot.tracking.log_task_inputs`), and its metrics are grouped by the phase that measured them
(:data:`PHASES`: ``rollout/``, ``update/``, ``discriminator/``, ``gate/``, ``eval/``, ``warmup/``, and ``time/``: each
stage's wall-clock seconds), which the UI draws as sections. The summary figures (``base_*``, ``final_*``, ``n_params``) stay ungrouped: the runs table's columns.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from gan_cot.checkpoint import write_json
from gan_cot.steps import LABELS

# phase -> the metric names it claims (a name ending in "_" claims every name it starts)
PHASES: dict[str, tuple[str, ...]] = {
    "rollout": ("rollout_",),  # scoring: the round's chains, accuracy and tokens
    # the refresh (F1 before it, its loss, the labels it learned); its verdict on the round's steps
    "discriminator": ("disc_", "frac_", "label_frac_"),
    "update": ("policy_loss", "pg_loss", "kl", "clip_frac", "ratio", "sft_loss", "lr"),
    "gate": ("gate_", "alpha_"),
    "eval": ("val_",),
    "warmup": ("pool_", "warmup_", "backoff_"),  # backoff_: the warm start's held-out check per drop (gan_cot.backoff)
    "guard": ("guard_",),  # the base-accuracy guard's checks (gan_cot.guard)
    "time": ("time_",),  # wall-clock seconds of each stage (gan_cot.trainer.StageClock)
}
WALL_CLOCK = "time/"
"""The phase of wall-clock seconds: the only metrics two runs of the same seed do not share (reproducibility checks
leave them out)."""
DROPPED = (
    "rollout_",
    "disc_",
    "gate_",
    "warmup_",
    "time_",
    "guard_",
)  # said by the phase already: rollout/tokens, not rollout/rollout_tokens


def method_tag(method: str, cfg) -> str:
    """A gan-cot run's ``method`` tag with its discriminator variant: ``-frozen`` (never refreshed), ``-gold`` (refreshed
    on the task's oracle labels); the others (refreshed on the policy's labels or on rollout labels) add nothing."""
    if not method.startswith("gan-cot"):
        return method
    d = cfg.discriminator
    return method + ("-frozen" if d.mode == "frozen" else "-gold" if d.labels == "gold" else "")


def grouped(name: str) -> str:
    """The name a metric is logged under: ``phase/name`` (``rollout_tokens`` -> ``rollout/tokens``), or the name
    itself when no phase claims it."""
    for phase, keys in PHASES.items():
        for key in keys:
            if name == key or (key.endswith("_") and name.startswith(key)):
                return f"{phase}/{name[len(key) :] if key in DROPPED else name}"
    return name


class RunLogger:
    def __init__(self, cfg, out: Path, active: bool, log=print):
        self.cfg = cfg
        self.out = Path(out)
        self.active = active
        self.log = log
        self.run_id: str | None = None
        self.bar = None  # the rounds' progress bar (stderr), opened at the first round

    def start(self, run_id: str | None, resume: bool, method: str, start_round: int = 0) -> str | None:
        """Open the run: the checkpoint's run id, else (``resume`` after a kill before the first checkpoint) the one
        ``mlflow_run.json`` names, else a new run with the config as params and artifact and the ``method`` tag.

        A resumed run continues at ``start_round`` (the round after its checkpoint's): what the stopped attempt logged
        from that round on is replaced by the rounds run again, so each round is written once. The run records the
        process writing it (:data:`gan_cot.tracking.PROCESS_TAG`), so a later command can mark it KILLED if the
        process dies."""
        if not self.active:
            return run_id
        import mlflow

        from gan_cot import tracking
        from gan_cot.config_loader import to_dict

        tracking.setup(self.cfg.experiment, self.cfg.mlflow_dir)
        run_file = self.out / "mlflow_run.json"
        if resume and run_id is None and run_file.exists():
            run_id = json.loads(run_file.read_text())["run_id"]
        new = run_id is None
        method = method_tag(method, self.cfg)
        name = tracking.run_name(method, self.cfg.seed)
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=name)
        self.run_id = run.info.run_id
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(run_file, {"run_id": self.run_id})
        mlflow.set_tag(tracking.PROCESS_TAG, tracking.process_id())
        if not new:
            self.replace_after(start_round)
        if new:
            mlflow.log_params(tracking.flatten(to_dict(self.cfg)))
            mlflow.set_tags({"method": method, "seed": str(self.cfg.seed), "task": self.cfg.task})
            tracking.log_task_inputs(self.cfg.make_task(), self.cfg.task, self.cfg.seed, self.cfg.eval.n)
            write_json(self.out / "config.json", to_dict(self.cfg), indent=2)
            mlflow.log_artifact(str(self.out / "config.json"))
        return self.run_id

    def replace_after(self, start_round: int) -> None:
        """A resume at ``start_round``: drop the stopped attempt's points from that round on, and say so on the run."""
        import mlflow

        from gan_cot import tracking

        gone = tracking.drop_metrics_from(self.run_id, start_round)
        if gone is None:
            note = f"rounds from {start_round} logged again; earlier points at those steps are from a stopped attempt"
        else:
            note = f"resumed at round {start_round}; {gone} metric point(s) of the stopped attempt replaced"
        mlflow.set_tag("gan_cot.resumed", note)
        self.log(f"MLflow run {self.run_id}: {note}")

    def metrics(self, metrics: dict, step: int | None = None, prefix: str = "") -> None:
        """Metrics under their phase's name (:func:`grouped`); a ``prefix`` (``final_``) keeps them ungrouped."""
        if self.active and metrics:
            import mlflow

            names = {k: f"{prefix}{k}" if prefix else grouped(k) for k in metrics}
            mlflow.log_metrics({names[k]: float(v) for k, v in metrics.items()}, step=step)

    def round(self, r: int, metrics: dict) -> None:
        """A round's metrics at step ``r``, grouped by phase, one line on the console and the rounds' progress bar."""
        if self.active:
            self.metrics(metrics, step=r)
            self.progress(r, metrics)
            with self.bar.external_write_mode():  # the line on a line of its own, the bar drawn again below it
                self.log(f"round {r}: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items())))

    def open_bar(self, r: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.cfg.rounds, initial=r, desc="rounds", unit="round", file=sys.stderr)

    def stage(self, r: int, name: str) -> None:
        """Show on the rounds' bar which stage of round ``r`` runs now (``round 3 (rollout)``)."""
        if self.active:
            self.open_bar(r)
            self.bar.set_description(f"round {r} ({name})")  # not "round r: ", the line of a round done

    def progress(self, r: int, metrics: dict) -> None:
        """Move the rounds' bar to round ``r`` done, with the round's accuracy and tokens."""
        self.open_bar(r)
        self.bar.set_description("rounds")
        self.bar.update(r + 1 - self.bar.n)
        shown = {"acc": "rollout_accuracy", "tokens": "rollout_tokens", "val_acc": "val_accuracy"}
        self.bar.set_postfix({k: f"{metrics[v]:.3g}" for k, v in shown.items() if v in metrics})

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

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
            with warnings.catch_warnings():  # MLflow's hint on integer columns, every round: ours have no gaps
                warnings.simplefilter("ignore", UserWarning)
                mlflow.log_table(
                    {k: [row.get(k) for row in rows] for k in keys}, artifact_file=f"samples/round-{r:05d}.json"
                )

    def finish(self, final: dict, adapter: Path, rows: list[dict] | None = None, base: dict | None = None) -> None:
        """The final figures (``final_*``), the adapter, and the per-question rows of the final evaluation when given
        (``eval/test_rows.json``: what ``compare_runs.py`` bootstraps its intervals from). ``base``: the base model's
        evaluation on the same questions (its figures, and its ``rows`` where kept: ``eval/base_rows.json``). With
        rows, also a table of both for the UI's artifact view (``eval/test_table.json``) and the run's point against
        its base on the accuracy/tokens plane (``eval/pareto_point.json`` and ``.png``)."""
        if not self.active:
            return
        import mlflow

        from gan_cot import tracking

        self.close_bar()
        self.metrics({k: v for k, v in final.items() if isinstance(v, float)}, prefix="final_")
        base_rows = (base or {}).get("rows")
        if base_rows:
            tracking.log_eval_rows(base_rows, tracking.BASE_ROWS_ARTIFACT)
        point = None
        if rows:
            tracking.log_eval_rows(rows)
            tracking.log_eval_table(rows, base_rows)
            point = tracking.log_pareto_point(rows, base_rows, base)
        mlflow.set_tag("mlflow.note.content", tracking.summary_note(final, base, point))
        mlflow.log_artifacts(str(adapter), artifact_path="adapter")
        experiment_id = mlflow.active_run().info.experiment_id
        mlflow.end_run()
        self.log(f"the run in the MLflow UI (started as README.md says): {tracking.runs_url(experiment_id)}")

    def fail(self) -> None:
        """Close the run as FAILED (a run stopped by an error is left out of comparisons)."""
        self.close_bar()
        if self.active and self.run_id is not None:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")
