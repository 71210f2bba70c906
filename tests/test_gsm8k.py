import builtins
import json
import logging
import shutil
from pathlib import Path

import pytest

from gan_cot.tasks import gsm8k
from gan_cot.tasks.base import TaskDataError
from gan_cot.tasks.gsm8k import Gsm8kTask, calculator_labels, check_calculator, safe_eval

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "gsm8k_small.jsonl"  # 7 records, a blank line 7, the last record on line 8
BAD = FIXTURES / "gsm8k_bad.jsonl"  # lines 2 (not JSON), 3 (no answer) and 5 (no '####') are bad
SHARED = Path("/work/shared/data/gsm8k")


@pytest.fixture
def folder(tmp_path):
    """A GSM8K folder: the small fixture as train.jsonl, its first three lines as test.jsonl."""
    shutil.copy(SMALL, tmp_path / "train.jsonl")
    (tmp_path / "test.jsonl").write_text("".join(SMALL.read_text().splitlines(keepends=True)[:3]))
    return tmp_path


@pytest.fixture
def small():
    return {ex.id: ex for ex in Gsm8kTask(path=SMALL).examples("test")}


def test_parse_steps_answer_and_annotations(small):
    assert list(small) == [f"gsm8k-test-{i}" for i in (1, 2, 3, 4, 5, 6, 8)]
    ex = small["gsm8k-test-1"]
    assert ex.question.startswith("Natalia sold clips")
    assert ex.steps == [
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
    ]
    assert ex.meta["raw_steps"] == [
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.",
    ]
    assert ex.answer == "72"
    assert ex.meta["calc_ok"] == [True, True]
    assert ex.difficulty == 2
    assert ex.labels is None and ex.minimal_steps is None
    assert small["gsm8k-test-2"].steps[0] == "Weng earns 12/60 = $0.2 per minute."
    assert small["gsm8k-test-4"].difficulty == 4
    assert all("<<" not in s and ">>" not in s for e in small.values() for s in e.steps)


def test_wrong_annotation_and_unannotated_step(small):
    muffins = small["gsm8k-test-6"]
    assert muffins.meta["calc_ok"] == [False, True]
    assert calculator_labels(muffins) == ["wrong", None]
    pencils = small["gsm8k-test-8"]
    assert pencils.answer == "1200"  # '#### 1,200' normalised
    assert pencils.meta["calc_ok"] == [None, True]  # '<<25*48=1,200>>' is right
    assert calculator_labels(pencils) == [None, None]
    wrong = sum(e.meta["calc_ok"].count(False) for e in small.values())
    assert wrong == 1


def test_keep_calculator():
    ex = Gsm8kTask(path=SMALL, keep_calculator=True).examples("test", n=1)[0]
    assert ex.steps == ex.meta["raw_steps"]
    assert "<<48/2=24>>" in ex.steps[0]


def test_verify(small):
    task = Gsm8kTask(path=SMALL)
    ex = small["gsm8k-test-1"]
    reference = task.reference(ex)
    assert (
        reference
        == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    )
    assert task.verify(reference, ex)
    assert not task.verify(reference.replace("#### 72", "#### 71"), ex)
    assert not task.verify("Natalia sold 72 clips.", ex)  # no final answer
    pencils = small["gsm8k-test-8"]
    assert task.verify("25 * 48 = 1200\n#### 1,200", pencils)
    assert task.verify("25 * 48 = 1200\n#### $1200.0", pencils)


@pytest.mark.parametrize(
    "step, expected",
    [
        ("No calculation here.", None),
        ("48/2 = <<48/2=24>>24", True),
        ("<<2**3=8>>8 and <<7//2=3>>3 and <<7%3=1>>1", True),
        ("<<-(2+3)*2=-10>>-10", True),
        ("<<+5-2=3>>3", True),
        ("<<1/3=0.33333>>0.33333", True),  # relative error 1e-5
        ("<<3/4=3/4>>3/4", True),
        ("<<1000*2=2,000>>2,000", True),
        ("<<12*3=38>>38", False),
        ("<<1/3=0.33>>0.33", False),  # relative error 1e-2
        ("<<2+2=4>>4 and <<2+2=5>>5", False),  # one wrong annotation is enough
        ("<<2+2=4", False),  # unclosed
        ("<<2+2>>4", False),  # no '='
        ("<<1/0=0>>0", False),
        ("<<9**9**9=1>>", False),  # overflow, not a hang
        ("<<x+1=2>>2", False),
        ("<<__import__('os').system('echo hi')=0>>0", False),
        ("<<(1).real=1>>1", False),
    ],
)
def test_check_calculator(step, expected, monkeypatch):
    def no_eval(*args, **kwargs):
        raise AssertionError("eval must not be used")

    monkeypatch.setattr(builtins, "eval", no_eval)
    assert check_calculator(step) is expected


def test_safe_eval_rejects_non_arithmetic():
    assert safe_eval("(2 + 3) * 4 - 6 / 3") == 18.0
    assert safe_eval("$1,200 / 4") == 300.0
    for expr in ["abs(-1)", "[1]", "1 if 1 else 2", "2 < 3", "'a'", "True + 1", "1j", ""]:
        with pytest.raises(ValueError):
            safe_eval(expr)


def test_folder_splits_and_cache(folder):
    task = Gsm8kTask(path=folder, validation_size=2)
    train, validation, test = (task.examples(s) for s in ("train", "validation", "test"))
    assert [e.id for e in train] == [f"gsm8k-train-{i}" for i in range(1, 6)]
    assert [e.id for e in validation] == ["gsm8k-validation-6", "gsm8k-validation-8"]  # line 7 is blank
    assert [e.id for e in test] == ["gsm8k-test-1", "gsm8k-test-2", "gsm8k-test-3"]
    assert [e.id for e in task.examples("train", n=2)] == ["gsm8k-train-1", "gsm8k-train-2"]
    assert task.skipped == {"train": 0, "validation": 0, "test": 0}
    (folder / "train.jsonl").unlink()
    assert [e.id for e in task.examples("train")] == [e.id for e in train]  # cached, not read again
    with pytest.raises(ValueError, match="unknown split 'dev'.*'train', 'validation', 'test'"):
        task.examples("dev")


def test_folder_missing_file(folder):
    (folder / "test.jsonl").unlink()
    task = Gsm8kTask(path=folder, validation_size=2)
    assert len(task.examples("train")) == 5
    with pytest.raises(TaskDataError, match="test.jsonl not found"):
        task.examples("test")


def test_validation_size_too_large():
    with pytest.raises(TaskDataError, match="gsm8k_small.jsonl has 7 records.*validation_size=500"):
        Gsm8kTask(path=SMALL).examples("train")
    assert len(Gsm8kTask(path=SMALL).examples("validation")) == 7


def test_default_locations(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(gsm8k, "DEFAULT_DIR", tmp_path / "nowhere")
    monkeypatch.delenv(gsm8k.ENV_VAR, raising=False)
    with pytest.raises(TaskDataError, match=r"GAN_COT_GSM8K \(not set\).*nowhere.*path=.*--data"):
        Gsm8kTask()
    monkeypatch.setenv(gsm8k.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(TaskDataError, match="GAN_COT_GSM8K=.*missing.*nowhere"):
        Gsm8kTask()
    monkeypatch.setattr(gsm8k, "DEFAULT_DIR", folder)
    assert Gsm8kTask().path == folder.resolve()
    monkeypatch.setenv(gsm8k.ENV_VAR, str(folder))
    assert Gsm8kTask().path == folder
    with pytest.raises(TaskDataError, match="not found at .*nope.*path="):
        Gsm8kTask(path=tmp_path / "nope")


GOOD = json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}).encode()


@pytest.mark.parametrize(
    "line, problem",
    [
        (b'{"question": "What is 2 + 2?", "answer": "4\\n#### 4"', "not valid JSON"),
        (b'["What is 2 + 2?", "#### 4"]', "expected a JSON object"),
        (b'{"question": "What is 2 + 2?"}', "missing field 'answer'"),
        (b'{"answer": "2 + 2 = 4\\n#### 4"}', "missing field 'question'"),
        (b'{"question": "What is 2 + 2?", "answer": 4}', "field 'answer' is not a string"),
        (b'{"question": "What is 2 + 2?", "answer": "2 + 2 = 4"}', "no final answer after '####'"),
        (b'{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\\n####  "}', "no final answer after '####'"),
        (b'{"question": "What is 2 + 2?", "answer": "#### 4"}', "no solution steps"),
        (
            b'{"question": "Caf\xe9 costs 2 + 2?", "answer": "4\\n#### 4"}',
            "not valid UTF-8 \\(byte 0xe9 at column 18\\)",
        ),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join([GOOD, line, GOOD]) + b"\n")
    task = Gsm8kTask(path=path, validation_size=0)
    with pytest.raises(TaskDataError, match=f"train.jsonl:2: {problem}.*skip_bad=True \\(--skip-bad\\)"):
        task.examples("train")
    skipping = Gsm8kTask(path=path, validation_size=0, skip_bad=True)
    assert [e.id for e in skipping.examples("train")] == ["gsm8k-train-1", "gsm8k-train-3"]
    assert skipping.skipped["train"] == 1


def test_skip_bad_counts_per_split(caplog):
    with pytest.raises(TaskDataError, match="gsm8k_bad.jsonl:2: not valid JSON"):
        Gsm8kTask(path=BAD, validation_size=2).examples("train")
    task = Gsm8kTask(path=BAD, validation_size=2, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="gan_cot.tasks.gsm8k"):
        train = task.examples("train")
    assert [e.id for e in train] == ["gsm8k-train-1", "gsm8k-train-4"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "skipped 2 bad line(s)" in warnings[0] and "gsm8k_bad.jsonl:2" in warnings[0]
    assert "gsm8k_bad.jsonl:3" in warnings[0]
    assert [e.id for e in task.examples("validation")] == ["gsm8k-validation-6"]
    assert [e.answer for e in task.examples("test")] == ["7", "30", "120"]
    assert task.skipped == {"train": 2, "validation": 1, "test": 3}


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def test_local_datasets_folder(folder, datasets_cache):
    task = Gsm8kTask(dataset=str(folder), validation_size=2)
    by_path = Gsm8kTask(path=folder, validation_size=2)
    assert task.examples("train") == by_path.examples("train")
    assert task.examples("test") == by_path.examples("test")
    # datasets drops the blank line, so the last validation row is row 7 (line 8 of the file)
    assert [e.id for e in task.examples("validation")] == ["gsm8k-validation-6", "gsm8k-validation-7"]
    assert [e.steps for e in task.examples("validation")] == [e.steps for e in by_path.examples("validation")]
    assert len(task.examples("train")) == 5 and len(task.examples("test")) == 3


def test_local_copy_of_hub_repo(folder, tmp_path, datasets_cache):
    """A snapshot of the hub's openai/gsm8k: configs main and socratic, declared in README.md."""
    repo = tmp_path / "gsm8k_repo"
    for config in ("main", "socratic"):
        (repo / config).mkdir(parents=True)
        for name in ("train.jsonl", "test.jsonl"):
            shutil.copy(folder / name, repo / config / name)
    (repo / "socratic" / "test.jsonl").write_text(SMALL.read_text().splitlines()[4] + "\n")
    configs = "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.jsonl\n"
        f"  - split: test\n    path: {c}/test.jsonl\n"
        for c in ("main", "socratic")
    )
    (repo / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    task = Gsm8kTask(dataset=str(repo), validation_size=2)
    assert [e.answer for e in task.examples("test")] == ["72", "10", "5"]  # main, not socratic


def test_path_and_dataset_are_exclusive(folder):
    with pytest.raises(ValueError, match="not both"):
        Gsm8kTask(path=folder, dataset=str(folder))


@pytest.mark.skipif(not (SHARED / "train.jsonl").is_file(), reason=f"no GSM8K data at {SHARED}")
def test_shared_data(record_property):
    task = Gsm8kTask(path=SHARED)
    sizes = {split: len(task.examples(split)) for split in ("train", "validation", "test")}
    assert sizes == {"train": 7473 - 500, "validation": 500, "test": 1319}
    steps = wrong = annotated = 0
    for split in sizes:
        for ex in task.examples(split):
            assert ex.answer and ex.steps, ex.id
            assert all(ex.steps) and len(ex.meta["calc_ok"]) == len(ex.steps) == ex.difficulty
            steps += len(ex.steps)
            annotated += sum(ok is not None for ok in ex.meta["calc_ok"])
            wrong += ex.meta["calc_ok"].count(False)
    fraction = wrong / steps
    record_property("gsm8k_wrong_calculator_fraction", fraction)
    print(f"GSM8K: {steps} steps, {annotated} annotated, {wrong} with a wrong annotation ({fraction:.4%})")
    assert fraction < 0.01
