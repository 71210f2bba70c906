"""scripts/chain_shapes.py: each ledger-hard chain is put in the shape that says which timeline steps it left out."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gan_cot.tasks.ledger_hard import LedgerHardTask, granular_steps, sample_timeline, skip_step
from gan_cot_lab.commands.chain_shapes import shape, tally

ROOT = Path(__file__).resolve().parents[1]


def _problem():
    """A timeline with another person's event before the last one of the person asked about, and one after it."""
    rng = random.Random(0)
    while True:
        p = sample_timeline(rng)
        own = [i for i, e in enumerate(p.events) if e.person == p.target]
        others = [i for i, e in enumerate(p.events) if e.person != p.target]
        if len(own) >= 2 and any(i < own[-1] for i in others) and any(i > own[-1] for i in others):
            return p, own, others


def test_each_left_out_step_gives_its_shape():
    p, own, others = _problem()
    timeline = granular_steps(p, "timeline")
    mid = skip_step(p.events[next(i for i in others if i < own[-1])])
    trailing = skip_step(p.events[next(i for i in others if i > own[-1])])
    assert shape(p, timeline) == "timeline"
    assert shape(p, timeline + ["so they have it"]) == "timeline"  # an extra step leaves nothing out
    assert shape(p, timeline + ["check: 9 - 2 = 7"]) == "timeline"  # a check is not a merged step
    assert shape(p, [s for s in timeline if s != trailing]) == "trailing skip missing"
    assert shape(p, [s for s in timeline if s != mid]) == "mid skip missing"
    assert shape(p, [s for s in timeline if s not in (mid, trailing)]) == "mid skip missing"
    assert shape(p, granular_steps(p, "1")) == "mid skip missing"  # no skips at all
    assert shape(p, granular_steps(p, "2")) == "merged"
    assert shape(p, granular_steps(p, "line")) == "line/direct"
    assert shape(p, []) == "line/direct"


def test_the_tally_counts_chains_and_accuracy_per_shape():
    task = LedgerHardTask(seed=0)
    examples = task.examples("test", 3)
    fmt = task.format
    chains = [granular_steps(task.problem(examples[0]), "timeline"), granular_steps(task.problem(examples[1]), "1"),
              granular_steps(task.problem(examples[2]), "timeline")]  # fmt: skip
    rows = [{"id": ex.id, "completion": fmt.render(steps, ex.answer), "correct": ok}
            for ex, steps, ok in zip(examples, chains, (True, False, False))]  # fmt: skip
    shapes = tally(task, examples, rows)
    assert shapes["timeline"] == {"chains": 2, "correct": 1, "accuracy": 0.5}
    assert sum(f["chains"] for f in shapes.values()) == 3


@pytest.mark.slow
def test_the_command_reads_the_shipped_base_s_chains(tmp_path):
    cmd = [sys.executable, "scripts/chain_shapes.py", "--model", "models/ledger-hard-verbose-base", "--n", "8",
           "--threads", "1", "--json"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n"] == 8 and sum(f["chains"] for f in result["shapes"].values()) == 8
    correct = sum(f["correct"] for f in result["shapes"].values())
    assert correct / 8 == pytest.approx(result["accuracy"])
    assert "| shape | chains | accuracy |" in out
    bad = subprocess.run([*cmd[:3], str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "missing" in bad.stderr


def test_the_target_ablation_writes_each_set_from_the_reference():
    """scripts/target_ablation.py's target sets: clean drops only the redundant and wrong kinds, walk writes lines and
    direct answers out as timelines, timeline is the oracle's chain, pruned falls back to the whole chain."""
    from gan_cot_lab.commands.target_ablation import CLEAN_KINDS, composition, written

    task = LedgerHardTask(seed=0)
    examples = task.examples("train", 300)
    for ex in examples:
        clean = written(task, ex, "clean")
        assert clean == [s for s, k in zip(ex.steps, ex.meta["kinds"]) if k in CLEAN_KINDS]
        assert written(task, ex, "timeline") == task.granular_steps(ex, "timeline")
        assert written(task, ex, "pruned", []) == list(ex.steps)  # nothing kept: the whole chain, as the pool does
    shortened = [ex for ex in examples if not ex.steps or ex.meta["kinds"] == ["line"]]
    assert shortened and all(written(task, ex, "walk") == task.granular_steps(ex, "timeline") for ex in shortened)
    sets = {t: composition(task, examples, [written(task, ex, t) for ex in examples]) for t in ("clean", "walk")}
    assert sets["clean"]["line_direct"] > 0.05 and sets["walk"]["line_direct"] < sets["clean"]["line_direct"]
    assert sets["clean"]["merged"] > 0.1 and sets["walk"]["merged"] == sets["clean"]["merged"]
    assert composition(task, examples, [written(task, ex, "timeline") for ex in examples])["merged"] == 0


def test_the_target_ablation_refuses_an_unknown_set_or_task():
    cmd = [sys.executable, "scripts/target_ablation.py", "--targets", "pruned,verbose"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert (
        out.returncode != 0 and "--targets 'pruned,verbose': choose from pruned, clean, walk, timeline" in out.stderr
    )
    out = subprocess.run([*cmd[:2], "--config", "configs/default.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "task ledger has no timeline" in out.stderr
