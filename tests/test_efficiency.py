"""Efficiency figures against hand-computed values; the thinking/answer split of a completion."""

import pytest

from gan_cot.efficiency import acu, aes, against_base, compression_rate, pareto_front, split_thinking
from gan_cot.evaluate import thinking_answer_tokens


def test_compression_rate_is_the_fraction_of_base_tokens_cut():
    assert compression_rate(60, 150) == pytest.approx(0.6)
    assert compression_rate(150, 150) == 0.0
    assert compression_rate(300, 150) == pytest.approx(-1.0)  # twice as long
    assert compression_rate(60, 0) is None and compression_rate(None, 150) is None


def test_acu_in_points_per_billion_params_per_hundred_tokens():
    # 100% with a 1B model and 100 tokens: 100 / (1 * 1)
    assert acu(1.0, 1e9, 100) == pytest.approx(100.0)
    # 95.07% with 32B parameters and 741.1 tokens: 95.07 / (32 * 7.411) = 0.40088
    assert acu(0.9507, 32e9, 741.1) == pytest.approx(0.40088, abs=1e-5)
    # halving the tokens doubles it; so does halving the parameters
    assert acu(0.8, 1.5e9, 150) == pytest.approx(2 * acu(0.8, 1.5e9, 300)) == pytest.approx(2 * acu(0.8, 3e9, 150))
    assert acu(0.8, 1.5e9, 300) == pytest.approx(80 / 4.5)
    assert acu(0.8, 0, 300) is None and acu(0.8, 1e9, 0) is None


def test_aes_rewards_cuts_and_penalises_drops_harder_than_gains():
    # O1-Pruner, Marco-o1 on MATH: base 73.8% / 1156 tokens -> 77.5% / 657 tokens, reported AES 0.58
    # dL = 499/1156 = 0.431661, dA = 3.7/73.8 = 0.050136, AES = 0.431661 + 3 * 0.050136 = 0.582068
    assert aes(0.775, 657, 0.738, 1156) == pytest.approx(0.582068, abs=1e-6)
    # on GSM8K: 89.2% / 530 -> 91.4% / 343: 187/530 + 3 * 2.2/89.2 = 0.352830 + 0.073991 = 0.426821 (0.43)
    assert aes(0.914, 343, 0.892, 530) == pytest.approx(0.426821, abs=1e-6)
    # a drop: half the tokens (dL = 0.5) for a 20% relative accuracy loss: 0.5 - 5 * 0.2 = -0.5
    assert aes(0.8, 50, 1.0, 100) == pytest.approx(-0.5)
    # same length, same accuracy: 0; same accuracy, 10% shorter: 0.1
    assert aes(0.9, 100, 0.9, 100) == 0.0
    assert aes(0.9, 90, 0.9, 100) == pytest.approx(0.1)
    assert aes(0.5, 90, 1.0, 100, gamma=1.0) == pytest.approx(0.1 - 0.5)
    assert aes(0.9, 90, 0.0, 100) is None and aes(0.9, 90, 0.9, 0) is None


def test_pareto_front_keeps_the_undominated_points_fewest_tokens_first():
    points = [(100, 0.9), (50, 0.8), (120, 0.85), (50, 0.7), (200, 0.95), (None, 1.0)]
    # (120, 0.85) is beaten by (100, 0.9); (50, 0.7) by (50, 0.8); the None point is skipped
    assert pareto_front(points) == [1, 0, 4]
    assert pareto_front([(10, 0.5), (10, 0.5)]) == [0, 1]  # equal points are both on the front
    assert pareto_front([]) == []


def test_split_thinking_cuts_at_the_first_answer_marker():
    completion = "Ann: 3 + 2 = 5\nAnn has 5 coins. Check: 5\n#### 5"
    thinking, answer = split_thinking(completion)
    assert thinking == "Ann: 3 + 2 = 5\nAnn has 5 coins. Check: 5\n"
    assert answer == "#### 5"
    assert split_thinking("no answer yet") == ("no answer yet", "")
    assert split_thinking("#### 4\n#### 5") == ("", "#### 4\n#### 5")


class WordTokenizer:
    """Whitespace tokens: the counts of a hand-made completion are easy to check by eye."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


def test_thinking_and_answer_tokens_add_up_to_the_total():
    texts = ["a b c\n#### 7", "a b c d e", "#### 3"]
    # generated totals: thinking 3 + answer 2; no marker: all 5 thinking; marker first: 0 + 2
    assert thinking_answer_tokens(WordTokenizer(), texts, [5, 5, 2]) == [(3, 2), (5, 0), (0, 2)]
    # a re-encoding longer than the total (a merge across the cut) is clamped: never negative answer tokens
    assert thinking_answer_tokens(WordTokenizer(), ["a b c #### 1"], [2]) == [(2, 0)]
    assert thinking_answer_tokens(WordTokenizer(), [], []) == []


def test_against_base_reports_compression_and_aes():
    base = {"accuracy": 1.0, "mean_tokens": 100.0, "mean_thinking_tokens": 90.0}
    result = {"accuracy": 1.0, "mean_tokens": 40.0, "mean_thinking_tokens": 30.0}
    out = against_base(result, base)
    assert out["compression"] == pytest.approx(0.6)
    assert out["thinking_compression"] == pytest.approx(2 / 3)
    assert out["aes"] == pytest.approx(0.6)


def test_evaluate_reports_thinking_and_answer_tokens(tiny_model_dir):
    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks.ledger import LedgerTask

    task = LedgerTask()
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    res = evaluate(model, tok, task, task.examples("test", 3), EvalSettings(max_new_tokens=12), show_progress=False)
    for key in ("accuracy", "mean_tokens", "tokens_vs_minimal", "mean_thinking_tokens", "mean_answer_tokens"):
        assert key in res
    assert res["mean_thinking_tokens"] + res["mean_answer_tokens"] == pytest.approx(res["mean_tokens"])


def test_evaluate_script_with_base_reports_figures_against_it(tmp_path, tiny_model_dir):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "scripts/evaluate.py", "--model", str(tiny_model_dir), "--n", "4", "--max-new-tokens", "8"]
    r = subprocess.run([*cmd, "--base", str(tmp_path / "missing")], capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "missing does not exist" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*cmd, "--base", str(tiny_model_dir), "--json"], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # the same model as its own base: nothing cut, same figures
    assert out["compression"] == 0.0 and out["thinking_compression"] == 0.0
    assert out["base_mean_tokens"] == out["mean_tokens"] and out["base_n_params"] == out["n_params"] > 0
    assert out["mean_thinking_tokens"] + out["mean_answer_tokens"] == pytest.approx(out["mean_tokens"])
    assert out["base_acu"] == out["acu"]
    assert out["aes"] is None or out["aes"] == 0.0  # undefined when the untrained base never answers right


def test_an_evaluation_logged_as_a_run_is_a_row_compare_runs_reads(tmp_path, tiny_model_dir):
    import json
    import subprocess
    import sys
    from pathlib import Path

    import mlflow

    from gan_cot import tracking

    root = Path(__file__).resolve().parents[1]
    store = tmp_path / "mlruns"
    cmd = [sys.executable, "scripts/evaluate.py", "--model", str(tiny_model_dir), "--n", "4", "--max-new-tokens", "8",
           "--seed", "2", "--experiment", "comparison-x", "--mlflow-dir", str(store), "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    run = mlflow.tracking.MlflowClient().get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == tracking.run_name("base", 2)
    assert run.data.tags["method"] == "base" and run.data.tags["seed"] == "2"
    assert run.data.metrics["final_accuracy"] == out["accuracy"] == run.data.metrics["base_accuracy"]
    rows = tracking.load_eval_rows(out["run_id"])
    assert len(rows) == 4 and sum(r["tokens"] for r in rows) / 4 == pytest.approx(out["mean_tokens"])
