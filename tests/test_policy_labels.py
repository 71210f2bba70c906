"""Policy-relative step labels: a step is redundant only if the policy still answers without it; the pool prunes by
them; the guard keeps a run from ending below its base."""

import contextlib
import math
from pathlib import Path

import pytest
import torch

from gan_cot.config_loader import load_config
from gan_cot.discriminator.policy_labels import PolicyLabelConfig, labels_from_lean, step_lean, suffix_logprobs
from gan_cot.models import load_model, load_tokenizer, render_prompt
from gan_cot.tasks.ledger_hard import LedgerHardTask
from gan_cot.trainer_config import AdversarialConfig

ROOT = Path(__file__).resolve().parents[1]
HARD_BASE = ROOT / "models" / "ledger-hard-verbose-base"


@pytest.fixture(scope="module")
def hard_base():
    return load_model(str(HARD_BASE), dtype=torch.float32), load_tokenizer(str(HARD_BASE))


def test_the_rule_reads_lean_stop_and_answer_gain():
    cfg = PolicyLabelConfig(lean=0.1, stop=2.0, wrong=0.1)
    lean, gain, stop = [0.5, 0.0, 0.0, 0.0, -0.3], [0.0, 0.0, 0.0, 0.4, 0.0], [0.0, 0.0, 3.0, 0.0, 0.0]
    assert labels_from_lean(lean, gain, stop, cfg) == ["useful", "redundant", "useful", "wrong", "wrong"]
    nxt = [0.0, 0.6, 0.0, 0.0, 0.0]  # only the next step leans on step 1: off by default, useful with lean_next
    assert labels_from_lean(lean, gain, stop, cfg, nxt)[1] == "redundant"
    with_next = PolicyLabelConfig(lean=0.1, stop=2.0, wrong=0.1, lean_next=0.25)
    assert labels_from_lean(lean, gain, stop, with_next, nxt) == ["useful", "useful", "useful", "wrong", "wrong"]


def test_suffix_logprobs_match_a_direct_computation(hard_base):
    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    ex = task.examples("validation", 1)[0]
    text = render_prompt(tok, task.prompt(ex)) + task.format.render(ex.steps, ex.answer)
    start = text.rfind("####")
    [[(total, count)]] = suffix_logprobs(policy, tok, [text], [[start]], PolicyLabelConfig(batch_size=1))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(policy(input_ids=ids).logits[0, :-1].float(), -1)
    first = next(t for t, (_, e) in enumerate(enc["offset_mapping"]) if e > start)
    expected = sum(float(logp[t - 1, ids[0, t]]) for t in range(first, ids.shape[1]))
    assert count == ids.shape[1] - first and count > 0
    assert total == pytest.approx(expected, abs=1e-4)


def test_a_content_redundant_step_the_policy_needs_is_kept_and_one_it_does_not_is_dropped(hard_base):
    """On ledger-hard the gold labels call ``skip: Cal buys 7`` redundant (it tells a reader nothing), but the shipped
    base loses its place in the question without it; a restatement it does not need."""
    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    exs = task.examples("validation", 40)
    chains = [[s.strip() for s in ex.steps] for ex in exs]
    leans = step_lean(policy, tok, task.format, [task.prompt(e) for e in exs], chains, [e.answer for e in exs])
    by_kind: dict[str, list[str]] = {}
    for ex, lean in zip(exs, leans):
        assert len(lean.labels) == len(ex.steps)
        kinds = ex.meta["kinds"]
        last = max((i for i, k in enumerate(kinds) if k in ("update", "merge", "line")), default=-1)
        for i, (kind, gold, label) in enumerate(zip(kinds, ex.labels, lean.labels)):
            if kind == "skip" and i < last:
                assert gold == "redundant"  # content: nothing new for a reader
            by_kind.setdefault("skip-needed" if kind == "skip" and i < last else kind, []).append(label)
    needed = by_kind["skip-needed"]
    assert len(needed) >= 40 and needed.count("useful") / len(needed) >= 0.85
    restates = by_kind["restate"]
    assert len(restates) >= 20 and restates.count("redundant") / len(restates) >= 0.8
    updates = by_kind["update"]
    assert updates.count("useful") / len(updates) >= 0.95


def test_the_next_step_says_which_skips_the_policy_needs(hard_base):
    """``lean_next``: a skip's next step (the next event on the timeline) is far less likely without it, while a
    restatement's next step is not; so the next-step lean keeps more of the needed skips than the rest's mean alone,
    and still drops the restatements."""
    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    exs = task.examples("validation", 40)
    chains = [[s.strip() for s in ex.steps] for ex in exs]
    args = (policy, tok, task.format, [task.prompt(e) for e in exs], chains, [e.answer for e in exs])
    plain = step_lean(*args)
    nxt = step_lean(*args, PolicyLabelConfig(lean_next=0.25))
    kinds = [k for ex in exs for k in ex.meta["kinds"]]
    values = [v for lean in nxt for v in lean.next_lean]
    assert all(lean.next_lean[-1] == 0.0 for lean in nxt if lean.next_lean)  # the last step has no next step
    assert [lean.lean for lean in nxt] == [lean.lean for lean in plain]  # the same measurements otherwise

    def mean(kind):
        got = [v for k, v in zip(kinds, values) if k == kind]
        return sum(got) / len(got)

    assert mean("skip") > 0.5 > 0.1 > mean("restate")

    def redundant(leans, kind):
        got = [lab for lean, ex in zip(leans, exs) for lab, k in zip(lean.labels, ex.meta["kinds"]) if k == kind]
        return got.count("redundant") / len(got)

    assert redundant(nxt, "skip") < redundant(plain, "skip")
    assert redundant(nxt, "restate") >= 0.8


def test_the_pool_prunes_by_what_the_policy_needs(hard_base):
    """sft.prune_by=policy: the reference chain loses its restatements, checks and detours, keeps its needed skips,
    and every target still verifies."""
    from gan_cot.discriminator.refresh import policy_records
    from gan_cot.pool import SFTPool

    policy, tok = hard_base
    cfg = load_config(AdversarialConfig, ROOT / "configs" / "ledger-hard.yaml", ["rollout.batch_size=8"])
    task = cfg.make_task()
    examples = task.examples("train", 16)
    pool = SFTPool(cfg, tok, task, examples)

    def labeler(exs, steps):
        return [r.labels for r in policy_records(policy, tok, task, exs, steps, cfg.discriminator)]

    strategy = type("One", (), {"is_main": False, "sum": staticmethod(lambda v: v)})()
    stats = pool.fill_from_references(list(range(16)), None, strategy, labeler)
    assert stats["pool_size"] == 16 and 0.5 < stats["pool_steps_kept"] < 1.0
    assert len(pool.records) == 16
    kept = {"skip": 0, "restate": 0}
    total = {"skip": 0, "restate": 0}
    for i, ids in pool.targets.items():
        text = tok.decode(ids, skip_special_tokens=True)
        assert task.verify(text, examples[i])
        lines = set(text.split("\n"))
        for step, kind in zip(examples[i].steps, examples[i].meta["kinds"]):
            if kind in kept:
                total[kind] += 1
                kept[kind] += step.strip() in lines
    assert total["skip"] >= 20 and kept["skip"] / total["skip"] >= 0.8
    assert total["restate"] >= 10 and kept["restate"] / total["restate"] <= 0.3


def test_a_sampled_pool_prunes_the_policys_own_correct_chains_by_its_labels(hard_base):
    """sft.pool_source=samples with sft.prune_by=policy: only correct finished chains are labelled (the records the
    discriminator learns), each target keeps its useful steps and verifies, and a question keeps its shortest."""
    from gan_cot.discriminator.refresh import policy_records
    from gan_cot.pool import SFTPool
    from gan_cot.rollout import Chain, RolloutBatch

    policy, tok = hard_base
    cfg = load_config(AdversarialConfig, ROOT / "configs" / "ledger-hard.yaml", ["sft.pool_source=samples",
                      "sft.pool_samples=2", "rollout.batch_size=8"])  # fmt: skip
    task = cfg.make_task()
    examples = task.examples("train", 4)
    pool = SFTPool(cfg, tok, task, examples)
    fmt = task.format

    def chain(i, steps, answer, correct=True):  # the reference chain as if the policy had written it
        text = fmt.render(steps, answer)
        return Chain(i, [], tok(text)["input_ids"], text, list(steps), [], correct, True)

    def sample_and_score(idx, g):
        chains = []
        for i in idx:
            ex = examples[i]
            chains += [chain(i, ex.steps, ex.answer), chain(i, ex.steps, str(int(ex.answer) + 1), correct=False)]
        return RolloutBatch(chains, g), None

    labelled = []

    def labeler(exs, steps):
        labelled.extend(steps)
        return [r.labels for r in policy_records(policy, tok, task, exs, steps, cfg.discriminator)]

    strategy = type("One", (), {"is_main": False, "sum": staticmethod(lambda v: v)})()
    stats = pool.fill_from_samples(list(range(4)), sample_and_score, strategy, labeler)
    assert len(labelled) == 4 and len(pool.records) == 4 and pool.record_index == [0, 1, 2, 3]  # the wrong ones never
    assert stats["pool_size"] == 4 and 0.3 < stats["pool_steps_kept"] < 1.0
    for i, ids in pool.targets.items():
        text = tok.decode(ids, skip_special_tokens=True)
        assert task.verify(text, examples[i])
        useful = [t for t, lab in zip(pool.records[i].steps, pool.records[i].labels) if lab == "useful"]
        assert text.split("\n")[:-1] == useful or not useful  # the useful steps, then the answer

    before = dict(pool.targets)  # a longer target offered later for question 0 does not replace the shorter one
    pool.offer_labeled(RolloutBatch([chain(0, [*examples[0].steps, "so it is"], examples[0].answer)], 1),
                       lambda exs, steps: [["useful"] * len(s) for s in steps])  # fmt: skip
    assert pool.targets[0] == before[0]


class _Strategy:
    """The part of the DeepSpeed strategy the guard uses, on a plain module (one process, no ZeRO)."""

    is_main = True

    def __init__(self, model):
        self.model = model

    def gathered(self, trainable_only=False, modify=False):
        return contextlib.nullcontext()


def test_the_guard_rolls_back_to_the_last_state_that_passed():
    from gan_cot.guard import Guard

    model = torch.nn.Linear(3, 3)
    model.bias.requires_grad_(False)
    said = []
    guard = Guard(load_config(AdversarialConfig, None, ["guard.margin=0.05"]).guard, _Strategy(model), said.append)
    guard.base_accuracy = 0.8
    start = model.weight.detach().clone()
    assert guard.check(0.78, "warm start")["guard_rollback"] == 0.0  # within the margin: kept
    with torch.no_grad():
        model.weight.add_(1.0)
    moved = model.weight.detach().clone()
    assert guard.check(0.9, "round 0")["guard_rollback"] == 0.0
    with torch.no_grad():
        model.weight.mul_(-3.0)
    out = guard.check(0.7, "round 1")  # below 0.8 - 0.05: back to the state of round 0
    assert out["guard_rollback"] == 1.0 and torch.equal(model.weight, moved)
    assert not torch.equal(model.weight, start)
    assert len(said) == 1 and "round 1" in said[0] and "0.700" in said[0] and "rolled back" in said[0]
    guard.margin = None
    assert guard.check(0.0, "off") == {}


@pytest.mark.slow
def test_a_warm_start_below_the_base_backs_off_its_pruning(tmp_path, tiny_config, monkeypatch):
    """Forced: the warm-started policy measures below its base on validation, so the guard backs the pool off to
    unpruned chains, says so and logs it, and the run still finishes."""
    from gan_cot.trainer import AdversarialTrainer

    cfg = tiny_config(
        tmp_path, "sft.source=pruned", "sft.pool_questions=8", "sft.warmup_steps=2", "sft.prune_by=policy",
        "discriminator.labels=policy", "discriminator.warmup_steps=2", "guard.margin=0.1",
    )  # fmt: skip
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    calls = []

    def fake_validation_accuracy():
        calls.append(len(calls))
        return 1.0 if len(calls) == 1 else 0.0  # the base, then every check of the adapter

    monkeypatch.setattr(trainer, "validation_accuracy", fake_validation_accuracy)
    original = trainer.evaluate

    def evaluate(split, n, policy=None, **kwargs):
        out = original(split, n, policy, **kwargs)
        if split == "validation" and policy is not None:  # the base's measurement
            out["accuracy"] = fake_validation_accuracy()
        return out

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    result = trainer.train()
    assert any("backing off to none" in a for a in result["guard_actions"])
    assert any("the end" in a and "rolled back" in a for a in result["guard_actions"])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    data = mlflow.tracking.MlflowClient().get_run(result["run_id"]).data.metrics
    assert data["warmup/backoff"] == 1.0 and data["warmup/pool_steps_kept"] == 1.0
    assert data["final_guard_rollback"] == 1.0 and data["final_guard_val_accuracy"] == 0.0


@pytest.mark.parametrize("fmt_name", ["hash", "r1"])
def test_labels_work_in_both_chain_formats_on_any_tokenizer(tiny_model_dir, fmt_name):
    """Nothing in the labeler knows the toy: GSM8K-style steps with LaTeX, in either format, on the tiny policy."""
    from gan_cot.formats import get_format

    policy, tok = load_model(str(tiny_model_dir), dtype=torch.float32), load_tokenizer(str(tiny_model_dir))
    chains = [["Natalia sold 48 / 2 = 24 clips in May.", "She sold 48 + 24 = 72 clips.", "So $72$ in all."], ["x"]]
    leans = step_lean(policy, tok, get_format(fmt_name), ["How many clips?", "What is x?"], chains, ["72", "1,234"])
    for steps, lean in zip(chains, leans):
        assert len(lean.labels) == len(lean.lean) == len(lean.stop_loss) == len(steps)
        assert all(math.isfinite(v) for v in lean.lean + lean.answer_gain + lean.stop_loss + lean.next_lean)
        assert len(lean.next_lean) == len(steps) and lean.next_lean[-1] == 0.0
        assert set(lean.labels) <= {"useful", "redundant", "wrong"}
    assert step_lean(policy, tok, get_format(fmt_name), ["q"], [[]], ["1"])[0].labels == []


def test_label_agreement_reports_kinds_and_a_stop_sweep(capsys):
    """The script a person checks the labels with: fractions per kind, and the same measurements relabelled at
    several --stop thresholds (a higher threshold can only make fewer steps useful)."""
    import json
    import runpy

    main = runpy.run_path(str(ROOT / "scripts" / "label_agreement.py"))["main"]
    policy = str(ROOT / "models" / "ledger-hard-verbose-base")
    args = ["--task", "ledger-hard", "--policy", policy, "--n", "6", "--threads", "1", "--sweep-stop", "0,1000"]
    assert main([*args, "--sweep-lean-next", "0,1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"update", "skip"} <= set(out["kinds"]) and out["n"] == 6
    low, high = out["stop_sweep"]["0"], out["stop_sweep"]["1000"]
    assert all(high[k] >= low[k] for k in low) and high != low
    low, high = out["lean_next_sweep"]["0"], out["lean_next_sweep"]["1000"]  # 1000: as good as off
    assert all(high[k] >= low[k] for k in low) and high != low
    assert high == {k: row["redundant"] for k, row in out["kinds"].items()}
    with pytest.raises(SystemExit) as e:
        main(["--task", "ledger-hard", "--policy", policy, "--labeler", "rollouts", "--sweep-stop", "1"])
    assert (
        e.value.code == 2
        and "--sweep-stop, --sweep-lean-next, --lean-next and --confirm are for --labeler policy"
        in (capsys.readouterr().err)
    )


def test_the_next_step_threshold_is_a_config_key_and_off_by_default():
    from gan_cot.discriminator.refresh import policy_label_config

    assert policy_label_config(load_config(AdversarialConfig, None, []).discriminator).lean_next is None
    cfg = load_config(AdversarialConfig, None, ["discriminator.label_lean_next=0.25"]).discriminator
    assert policy_label_config(cfg).lean_next == 0.25


def test_label_agreement_reads_the_thresholds_a_config_s_runs_use(capsys, tmp_path):
    """``--config``: the policy, task and label thresholds of a train_adv.py config, each unless given; a config of a
    task without step kinds is one error naming it."""
    import json
    import runpy

    main = runpy.run_path(str(ROOT / "scripts" / "label_agreement.py"))["main"]
    config = ROOT / "configs" / "ledger-hard.yaml"
    assert load_config(AdversarialConfig, config, []).discriminator.label_lean_next == 0.25
    assert main(["--config", str(config), "--n", "4", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["task"] == "ledger-hard" and out["policy"] == "models/ledger-hard-verbose-base"
    assert (out["lean_next"], out["lean"], out["stop"]) == (0.25, 0.1, 2.0)
    assert main(["--config", str(config), "--n", "4", "--threads", "1", "--lean-next", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["lean_next"] is None
    other = tmp_path / "gsm8k.yaml"
    other.write_text("task: gsm8k\nmodel: models/ledger-hard-verbose-base\n")
    with pytest.raises(SystemExit) as e:
        main(["--config", str(other)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and str(other) in err and "task gsm8k has no step kinds" in err
    with pytest.raises(SystemExit) as e:
        main(["--n", "4"])
    assert e.value.code == 2 and "give --policy" in capsys.readouterr().err


def test_a_drop_the_policy_cannot_continue_past_is_taken_back(hard_base):
    """discriminator.label_confirm: the policy continues the pruned chain past each drop. The last update (the final
    count) labelled redundant by hand, where a useful step (a trailing skip) follows it, is taken back far more often
    than a restatement the labels drop: past that step the continuation without it can answer with a count one event
    short, the one with it does not. Useful steps are never touched."""
    from gan_cot.discriminator.policy_labels import confirm_drops
    from gan_cot.discriminator.refresh import policy_records

    policy, tok = hard_base
    task = LedgerHardTask(seed=0)
    exs = task.examples("validation", 24)
    chains = [[s.strip() for s in ex.steps] for ex in exs]
    cfg = PolicyLabelConfig(lean_next=0.25, confirm=True, max_new_tokens=192)
    labels = [lean.labels for lean in step_lean(policy, tok, task.format, [task.prompt(e) for e in exs], chains,
                                                [e.answer for e in exs], cfg)]  # fmt: skip
    planted = []  # (chain, step): the last update, called redundant where a useful step follows it
    for c, ex in enumerate(exs):
        kinds = ex.meta["kinds"]
        last = max((i for i, k in enumerate(kinds) if k == "update"), default=None)
        if last is not None and "useful" in labels[c][last + 1 :] and labels[c][last] == "useful":
            labels[c][last] = "redundant"  # the pruned chain then ends on a count one event short
            planted.append((c, last))
    assert len(planted) >= 8
    confirmed, stats = confirm_drops(policy, tok, task, exs, chains, labels, cfg)
    assert (
        stats.tested == sum(lab != "useful" for labs in labels for lab in labs)
        and stats.continuations == 2 * stats.tested
    )
    back = sum(confirmed[c][i] == "useful" for c, i in planted) / len(planted)
    restates = [(c, i) for c, ex in enumerate(exs) for i, k in enumerate(ex.meta["kinds"])
                if k == "restate" and labels[c][i] == "redundant"]  # fmt: skip
    assert len(restates) >= 10
    kept_out = sum(confirmed[c][i] == "redundant" for c, i in restates) / len(restates)
    # the base often writes a missing count again itself, so not every planted drop is refuted; far more are than
    # restatements (greedy continuations of a changed prefix sometimes go wrong either way)
    assert back >= 0.4 and kept_out >= 0.85 and back > 3 * (1 - kept_out), (back, kept_out)
    for before, after in zip(labels, confirmed):  # only drops change, and only to useful
        assert all(b == a or (b != "useful" and a == "useful") for b, a in zip(before, after))
    assert stats.restored == sum(b != a for before, after in zip(labels, confirmed) for b, a in zip(before, after))
    off, none = confirm_drops(policy, tok, task, exs, chains, labels, PolicyLabelConfig(confirm=False))
    assert off == labels and none.continuations == 0
    # through the trainer's entry point: the counts land in the cost dict
    run = load_config(AdversarialConfig, ROOT / "configs" / "ledger-hard.yaml", ["discriminator.label_confirm=true"])
    cost: dict = {}
    records = policy_records(policy, tok, task, exs[:4], chains[:4], run.discriminator, run.rollout, cost)
    assert len(records) == 4 and cost["label_confirm_tested"] > 0 and cost["label_continuations"] > 0
