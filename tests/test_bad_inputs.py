"""Bad inputs across data files, configs, checkpoints, downloads and output folders: each one exits non-zero with
one clear ``error:`` line naming the cause, no traceback, and nothing half-written left behind.

The cases live in ``tests/bad_inputs.py`` (``python tests/bad_inputs.py`` prints them as a table).
"""

import pytest
from bad_inputs import CASES, build_shared, run_case


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    return build_shared(tmp_path_factory.mktemp("bad-inputs"), model_dir=tiny_model_dir)


def test_the_table_covers_every_area():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) >= 20
    assert {c.area for c in CASES} == {"data", "config", "checkpoint", "download", "output"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case, shared, tmp_path):
    outcome = run_case(case, tmp_path / "work", shared)
    assert not outcome.problems(), outcome.report()
    assert outcome.code == 0 if case.accepted else outcome.code not in (None, 0)


def test_gsm8k_skip_bad_skips_duplicate_ids_and_long_lines(tmp_path):
    import json

    from bad_inputs import gsm8k_record

    from gan_cot.tasks.gsm8k import MAX_LINE_BYTES, Gsm8kTask

    lines = [json.dumps(gsm8k_record(i, id=f"q{i}")) for i in range(1, 5)]
    lines.insert(2, json.dumps(gsm8k_record(9, id="q1")))  # line 3 repeats line 1's id
    lines.append(json.dumps(gsm8k_record(7, id=7, question="x" * MAX_LINE_BYTES)))  # line 6: too long
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    task = Gsm8kTask(path=path, validation_size=0, skip_bad=True)
    examples = [e for split in ("train", "test") for e in task.examples(split)]  # the file splits by question
    assert sorted(e.meta["record_id"] for e in examples) == ["q1", "q2", "q3", "q4"]
    assert task.skipped["train"] + task.skipped["test"] == 2
    with pytest.raises(ValueError, match="field 'id' must be a non-empty string or an integer"):
        path.write_text(json.dumps(gsm8k_record(1, id=["a"])) + "\n")
        Gsm8kTask(path=path, validation_size=0).examples("train")


def test_probing_a_folder_leaves_nothing_behind(tmp_path):
    from gan_cot.usage import check_writable_dir

    check_writable_dir(tmp_path / "a" / "b" / "c", keep=False)
    assert list(tmp_path.iterdir()) == []
    check_writable_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []
