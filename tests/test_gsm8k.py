import builtins
import codecs
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


def by_line(task) -> dict:
    """Every example of a task's splits, by the line it came from."""
    return {
        int(ex.id.rsplit("-", 1)[1]): ex for split in ("train", "validation", "test") for ex in task.examples(split)
    }


@pytest.fixture
def small():
    return by_line(Gsm8kTask(path=SMALL))


def test_parse_steps_answer_and_annotations(small):
    assert sorted(small) == [1, 2, 3, 4, 5, 6, 8]
    ex = small[1]
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
    assert small[2].steps[0] == "Weng earns 12/60 = $0.2 per minute."
    assert small[4].difficulty == 4
    assert all("<<" not in s and ">>" not in s for e in small.values() for s in e.steps)


def test_wrong_annotation_and_unannotated_step(small):
    muffins = small[6]
    assert muffins.meta["calc_ok"] == [False, True]
    assert calculator_labels(muffins) == ["wrong", None]
    pencils = small[8]
    assert pencils.answer == "1200"  # '#### 1,200' normalised
    assert pencils.meta["calc_ok"] == [None, True]  # '<<25*48=1,200>>' is right
    assert calculator_labels(pencils) == [None, None]
    wrong = sum(e.meta["calc_ok"].count(False) for e in small.values())
    assert wrong == 1


def test_keep_calculator():
    ex = by_line(Gsm8kTask(path=SMALL, keep_calculator=True))[1]
    assert ex.steps == ex.meta["raw_steps"]
    assert "<<48/2=24>>" in ex.steps[0]


def test_verify(small):
    task = Gsm8kTask(path=SMALL)
    ex = small[1]
    reference = task.reference(ex)
    assert (
        reference
        == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    )
    assert task.verify(reference, ex)
    assert not task.verify(reference.replace("#### 72", "#### 71"), ex)
    assert not task.verify("Natalia sold 72 clips.", ex)  # no final answer
    pencils = small[8]
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
    assert [e.id for e in test] == ["gsm8k-test-1", "gsm8k-test-2", "gsm8k-test-3"]
    # train.jsonl repeats the three test questions: they never reach training; a tenth (at least one) validates
    lines = sorted(int(e.id.rsplit("-", 1)[1]) for e in train + validation)
    assert lines == [4, 5, 6, 8] and len(validation) == 1  # line 7 is blank
    assert [e.id for e in task.examples("train", n=2)] == [e.id for e in train[:2]]
    assert task.skipped == {"train": 0, "validation": 0, "test": 0}
    (folder / "train.jsonl").unlink()
    assert [e.id for e in task.examples("train")] == [e.id for e in train]  # cached, not read again
    with pytest.raises(ValueError, match="unknown split 'dev'.*'train', 'validation', 'test'"):
        task.examples("dev")


def test_folder_missing_file(folder):
    (folder / "test.jsonl").unlink()
    task = Gsm8kTask(path=folder, validation_size=0)
    assert len(task.examples("train")) == 7  # no test data: nothing to hold out
    with pytest.raises(TaskDataError, match="test.jsonl not found"):
        task.examples("test")


def test_validation_is_at_most_a_tenth_of_the_training_questions():
    task = Gsm8kTask(path=SMALL)  # validation_size 500, 7 records
    sizes = {split: len(task.examples(split)) for split in ("train", "validation", "test")}
    assert sizes["validation"] == 1 and sizes["test"] >= 1 and sum(sizes.values()) == 7


def _records(n: int, repeat_every: int = 0) -> list[str]:
    out = []
    for i in range(n):
        q = i - i % repeat_every if repeat_every else i  # a question repeated on later lines
        out.append(
            json.dumps(
                {"question": f"Ann has {q} pens and buys 2. How many?", "answer": f"{q}+2={q + 2}\n#### {q + 2}"}
            )
        )
    return out


def _questions(task, split):
    return [e.question for e in task.examples(split)]


@pytest.mark.parametrize("validation_size", [0, 1, 20, 500])
@pytest.mark.parametrize("layout", ["file", "folder", "folder-overlap", "dataset"])
def test_no_test_question_reaches_training(tmp_path, layout, validation_size, datasets_cache):
    lines = _records(300, repeat_every=3)
    if layout == "file":
        (tmp_path / "all.jsonl").write_text("\n".join(lines) + "\n")
        kwargs = {"path": tmp_path / "all.jsonl"}
    else:
        folder = tmp_path / "data"
        folder.mkdir()
        train, test = lines[:240], lines[240:]
        if layout == "folder-overlap":
            train = train + test[::4]  # some test questions copied into the train file
        (folder / "train.jsonl").write_text("\n".join(train) + "\n")
        (folder / "test.jsonl").write_text("\n".join(test) + "\n")
        kwargs = {"dataset": str(folder)} if layout == "dataset" else {"path": folder}
    task = Gsm8kTask(validation_size=validation_size, **kwargs)
    train, validation, test = (set(_questions(task, s)) for s in ("train", "validation", "test"))
    assert train and test and not (train & test) and not (validation & test) and not (train & validation)
    assert len(validation) <= validation_size and (validation or validation_size == 0)
    again = Gsm8kTask(validation_size=validation_size, **kwargs)
    assert all(_questions(again, s) == _questions(task, s) for s in ("train", "validation", "test"))  # deterministic
    if layout == "file":  # appending records moves no question from one split to another
        (tmp_path / "all.jsonl").write_text("\n".join(lines + _records(360)[300:]) + "\n")
        more = Gsm8kTask(validation_size=validation_size, **kwargs)
        assert test <= set(_questions(more, "test")) and not (set(_questions(more, "train")) & test)


def test_byte_order_mark_numeric_answer_and_empty_file(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = _records(20)
    lines[4] = json.dumps({"question": "Ann has 3 pens and buys 4. How many pens?", "answer": 7})
    path.write_bytes(codecs.BOM_UTF8 + "\n".join(lines).encode() + b"\n")
    examples = by_line(Gsm8kTask(path=path, validation_size=0))
    assert len(examples) == 20 and examples[1].steps == ["0+2=2"]  # the first line parses despite the mark
    assert examples[5].steps == [] and examples[5].answer == "7"  # an answer-only example
    path.write_text("\n\n")
    with pytest.raises(TaskDataError, match=r"d.jsonl holds no records"):
        Gsm8kTask(path=path).examples("test")


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
        (b'{"question": "What is 2 + 2?", "answer": true}', "field 'answer' is not a solution string or a number"),
        (b'{"question": "What is 2 + 2?", "answer": "2 + 2 = 4"}', "no final answer after '####'"),
        (b'{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\\n####  "}', "no final answer after '####'"),
        (
            b'{"question": "Caf\xe9 costs 2 + 2?", "answer": "4\\n#### 4"}',
            "not valid UTF-8 \\(byte 0xe9 at column 18\\)",
        ),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join([GOOD, line, GOOD]) + b"\n")
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"question": "What is 3 + 3?", "answer": "3 + 3 = 6\n#### 6"}) + "\n"
    )
    task = Gsm8kTask(path=tmp_path, validation_size=0)
    with pytest.raises(TaskDataError, match=f"train.jsonl:2: {problem}.*fix or remove the line"):
        task.examples("train")
    skipping = Gsm8kTask(path=tmp_path, validation_size=0, skip_bad=True)
    assert [e.id for e in skipping.examples("train")] == ["gsm8k-train-1", "gsm8k-train-3"]
    assert skipping.skipped["train"] == 1


def test_skip_bad_counts_per_split(caplog):
    with pytest.raises(TaskDataError, match=r"gsm8k_bad.jsonl:[235]: "):
        by_line(Gsm8kTask(path=BAD, validation_size=2))
    task = Gsm8kTask(path=BAD, validation_size=2, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="gan_cot.tasks.gsm8k"):
        lines = by_line(task)
    assert sorted(lines) == [1, 4, 6]  # lines 2 (not JSON), 3 (no answer) and 5 (no '####') are skipped
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert all(f"gsm8k_bad.jsonl:{n}" in warnings for n in (2, 3, 5))
    assert sum(task.skipped.values()) == 3


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def test_local_datasets_folder(folder, datasets_cache):
    task = Gsm8kTask(dataset=str(folder), validation_size=2)
    by_path = Gsm8kTask(path=folder, validation_size=2)
    for split in ("train", "validation", "test"):  # datasets drops the blank line: row numbers differ from lines
        assert [(e.question, e.steps) for e in task.examples(split)] == [
            (e.question, e.steps) for e in by_path.examples(split)
        ]
    assert len(task.examples("train")) + len(task.examples("validation")) == 4 and len(task.examples("test")) == 3


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
