"""The warm start's held-out check per drop (gan_cot/backoff.py): a drop like the steps whose absence the policy paid
for on held-out questions is taken back; a drop like the ones it leaves out safely stays dropped."""

from pathlib import Path

import pytest
import torch

from gan_cot.backoff import backoff_labels, omissions, step_spans, step_states
from gan_cot.models import load_model, load_tokenizer
from gan_cot.tasks.ledger_hard import LedgerHardTask

ROOT = Path(__file__).resolve().parents[1]
HARD_BASE = ROOT / "models" / "ledger-hard-verbose-base"


@pytest.fixture(scope="module")
def hard_base():
    return load_model(str(HARD_BASE), dtype=torch.float32), load_tokenizer(str(HARD_BASE))


def without(ex, kinds: set[str]) -> list[str]:
    return [s.strip() for s, k in zip(ex.steps, ex.meta["kinds"]) if k not in kinds]


def test_a_step_written_with_another_number_is_not_left_out():
    task = LedgerHardTask(seed=0)
    ref = ["skip: Cal buys 7", "Ann buys 3: 5 + 3 = 8", "so Ann has 8"]
    written = task.format.render(["Ann buys 3: 5 + 3 = 9"], "9")
    assert omissions(task.format, [ref], [written]) == [[0, 2]]  # the update went wrong; it was not skipped
    assert omissions(task.format, [ref], [task.format.render(ref, "8")]) == [[]]


def test_step_states_average_each_steps_own_tokens(hard_base):
    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    ex = next(ex for ex in task.examples("validation", 20) if len(ex.steps) >= 3)
    steps = [s.strip() for s in ex.steps]
    text = task.format.render(steps, ex.answer)
    assert [text[s:e] for s, e in step_spans(task.format, steps)] == steps
    [states] = step_states(policy, tok, task.format, [task.prompt(ex)], [steps], [ex.answer])
    assert states.shape == (len(steps), policy.config.hidden_size) and torch.isfinite(states).all()
    assert not torch.allclose(states[0], states[1])


def test_drops_like_the_steps_a_policy_paid_for_are_taken_back(hard_base):
    """Constructed held-out chains: the ones that leave out a ``skip:`` line are wrong, the ones that leave out only
    restatements and checks are right. The pool's skip drops are taken back, its restatement drops are not; with no
    wrong chain nothing is."""
    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    held = [ex for ex in task.examples("validation", 120) if "skip" in ex.meta["kinds"]][:80]
    completions, correct = [], []
    for q, ex in enumerate(held):
        paid = q % 4 == 0  # a quarter leave out their skips and go wrong
        steps = without(ex, {"restate", "check", "detour", "slip", "wrong_op"} | ({"skip"} if paid else set()))
        completions.append(task.format.render(steps, ex.answer))
        correct.append(not paid)
    pool = [ex for ex in task.examples("train", 60) if {"skip", "restate"} <= set(ex.meta["kinds"])][:30]
    steps = [[s.strip() for s in ex.steps] for ex in pool]
    labels = [["redundant" if k in ("skip", "restate") else "useful" for k in ex.meta["kinds"]] for ex in pool]
    new, stats = backoff_labels(policy, tok, task, pool, steps, labels, held, completions, correct, 20, 3.0)
    kinds = [k for ex in pool for k in ex.meta["kinds"]]
    flat_old, flat_new = [lab for labs in labels for lab in labs], [lab for labs in new for lab in labs]
    back = {k: sum(o != n for kk, o, n in zip(kinds, flat_old, flat_new) if kk == k) for k in ("skip", "restate")}
    n = {k: kinds.count(k) for k in ("skip", "restate")}
    assert back["skip"] >= 0.9 * n["skip"] and back["restate"] <= 0.1 * n["restate"], (back, n)
    assert stats.restored == sum(back.values()) and stats.drops == n["skip"] + n["restate"]
    assert stats.wrong == 20 and stats.questions == 80 and stats.omitted_wrong > 0 and 0.25 < stats.threshold < 1
    assert all(o == n or (o != "useful" and n == "useful") for o, n in zip(flat_old, flat_new))  # only drops move
    same, quiet = backoff_labels(policy, tok, task, pool, steps, labels, held, completions, [True] * len(held))
    assert same == labels and quiet.restored == 0


@pytest.mark.slow
def test_the_warm_start_takes_drops_back_and_trains_again_from_the_initial_adapter(tmp_path, tiny_config, monkeypatch):
    """Through the trainer: the held-out check runs on the warm-started policy's own validation chains; forced to take
    every drop back, the pool keeps every reference step, the warm start runs again from the initial adapter, and
    MLflow has the figures."""
    import gan_cot.backoff as backoff
    from gan_cot.pool import SFTPool
    from gan_cot.trainer import AdversarialTrainer

    real = backoff.backoff_labels
    seen = {}

    def take_all_back(policy, tokenizer, task, pool_examples, pool_steps, pool_labels, held, completions, correct,
                      *args):  # fmt: skip
        labels, stats = real(policy, tokenizer, task, pool_examples, pool_steps, pool_labels, held, completions,
                             correct, *args)  # fmt: skip
        seen.update(held=len(held), drops=stats.drops, ids=[ex.id for ex in held])
        stats.restored = sum(lab != "useful" for labs in pool_labels for lab in labs)
        return [["useful"] * len(labs) for labs in labels], stats

    monkeypatch.setattr(backoff, "backoff_labels", take_all_back)
    cfg = tiny_config(
        tmp_path, "sft.source=pruned", "sft.pool_questions=16", "sft.warmup_steps=2", "sft.prune_by=policy",
        "discriminator.labels=policy", "discriminator.warmup_steps=2", "discriminator.label_lean=0",
        "discriminator.label_stop=1000", "sft.backoff=true", "sft.backoff_questions=6", "rounds=1",
    )  # fmt: skip
    said = []
    trainer = AdversarialTrainer(cfg, log=said.append)
    trained = []
    original = SFTPool.train

    def train(pool, strategy, gate, r, steps, lr, schedule=None):
        if r < 0:  # a warm start: note where the adapter starts from
            trained.append(trainer.guard.snapshot())
        return original(pool, strategy, gate, r, steps, lr, schedule)

    monkeypatch.setattr(SFTPool, "train", train)
    result = trainer.train()
    assert seen["held"] == 6 and seen["drops"] > 0
    assert len(set(seen["ids"])) == 6
    assert len(trained) == 2 and all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    assert any("taken back" in m for m in said) and any("warm-up again" in m for m in said)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    data = mlflow.tracking.MlflowClient().get_run(result["run_id"]).data.metrics
    assert data["warmup/pool_steps_kept"] < 1.0 and data["warmup/backoff_pool_steps_kept"] == 1.0
    assert data["warmup/backoff_restored"] == data["warmup/backoff_drops"] > 0
    assert "warmup/backoff_val_accuracy" in data and "time/backoff" in data


def test_backoff_kinds_reports_what_the_check_takes_back_per_kind(capsys):
    """The script a person checks the back-off with: per kind of the pool's drops, the fraction taken back, with
    figures that add up; a config whose task has no kinds is refused by name."""
    import json
    import runpy

    main = runpy.run_path(str(ROOT / "scripts" / "backoff_kinds.py"))["main"]
    assert main(["--config", "configs/ledger-hard.yaml", "--pool", "12", "--n", "24", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 24 and out["pool"] == 12 and out["adapter"] is None and out["neighbours"] == 20
    assert out["drops"] == sum(row["drops"] for row in out["kinds"].values()) > 0
    assert out["restored"] == round(sum(r["drops"] * r["taken_back"] for r in out["kinds"].values()))
    assert {"restate"} <= set(out["kinds"]) and all(0 <= r["taken_back"] <= 1 for r in out["kinds"].values())
    with pytest.raises(SystemExit) as e:
        main(["--config", "configs/qwen1.5b_gsm8k.yaml"])
    assert e.value.code == 2 and "has no step kinds" in capsys.readouterr().err
