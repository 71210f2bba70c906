"""What a user hands in is what gets used: a data file is evaluated whole, answer-only records are read where no steps
are needed and refused by name where they are, and the sizes of a file's splits are printed where training splits it.
"""

import json

import pytest
from commands import command as load_script

from gan_cot.tasks import TaskDataError
from gan_cot.tasks.gsm8k import Gsm8kTask, parse_record


def record(i: int, **extra) -> dict:
    return {"question": f"Tom has {i} apples and buys 2 more. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}",
            **extra}  # fmt: skip


def write(path, lines) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def run(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = load_script(name).main(argv) or 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def evaluate(model, data, capsys, *args):
    code, out, err = run("evaluate", ["--model", str(model), "--task", "gsm8k", "--data", data,
                                      "--max-new-tokens", "2", "--json", *args], capsys)  # fmt: skip
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), out


def test_evaluating_a_file_reads_every_record_and_counts_every_bad_line(tmp_path, tiny_model_dir, capsys):
    lines = [record(i) for i in range(40)]
    lines[25:25] = ['{"question": "broken', {"question": "no answer"}]  # two bad lines, wherever a split puts them
    data = write(tmp_path / "test.jsonl", lines)
    result, out = evaluate(tiny_model_dir, data, capsys, "--skip-bad")
    assert result["n"] == 40 and result["split"] == "all"
    assert result["skipped_lines"] == 2
    assert "evaluating 40 record(s), the whole file" in out


def test_a_one_question_file_is_evaluated(tmp_path, tiny_model_dir, capsys):
    result, _ = evaluate(tiny_model_dir, write(tmp_path / "one.jsonl", [record(1)]), capsys)
    assert result["n"] == 1


def test_skipped_lines_counts_bad_lines_of_every_split_read(tmp_path):
    lines = [record(i) for i in range(60)] + ["not json"] * 3
    task = Gsm8kTask(path=write(tmp_path / "d.jsonl", lines), skip_bad=True, validation_size=0)
    task.examples("test")
    assert task.skipped_lines == 3  # the bad lines fall outside the test part, and are still counted
    assert sum(task.skipped.values()) < 3


def test_answer_only_records_are_examples_without_steps():
    for answer in ("#### 5", "####5", 5):
        ex = parse_record({"question": "Ann has 2 pens and buys 3. How many?", "answer": answer}, id="x")
        assert (ex.steps, ex.answer) == ([], "5")


def test_answer_only_records_are_evaluated(tmp_path, tiny_model_dir, capsys):
    lines = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(5)]
    result, _ = evaluate(tiny_model_dir, write(tmp_path / "answers.jsonl", lines), capsys)
    assert result["n"] == 5


def test_training_refuses_answer_only_records_by_line(tmp_path):
    lines = [record(i) for i in range(60)]
    lines[6] = {"question": "Ann has 2 pens and buys 3. How many?", "answer": "#### 5"}
    task = Gsm8kTask(path=write(tmp_path / "d.jsonl", lines), validation_size=0)
    split = next(s for s in ("train", "test") if any(e.id.endswith("-7") for e in task.examples(s)))
    with pytest.raises(TaskDataError, match=r"d\.jsonl:7: no solution steps before '####'; training"):
        task.require_steps(split, "training imitates reference steps")
    other = "test" if split == "train" else "train"
    task.require_steps(other)  # no answer-only record there


def test_training_prints_the_size_of_every_part_of_a_split_file(tmp_path, tiny_config, capsys):
    data = write(tmp_path / "d.jsonl", [record(i) for i in range(100)])
    cfg = tiny_config(tmp_path, "task=gsm8k", f"data={data}", "discriminator.labels=auto", "discriminator.mode=frozen")
    load_script("train_adv").preflight(cfg)
    out = capsys.readouterr().out
    sizes = Gsm8kTask(path=data).split_sizes()
    assert sum(sizes.values()) == 100 and min(sizes.values()) > 0
    assert (
        f"d.jsonl split by question into train {sizes['train']}, validation {sizes['validation']}, "
        f"test {sizes['test']} records" in out
    )


@pytest.fixture(scope="module")
def shepherd(tmp_path_factory, tiny_tokenizer):
    """A local Math-Shepherd-style checkpoint (a causal LM read at the step tag 'ки'), without a card."""
    import prm_checkpoints

    return prm_checkpoints.step_tag_lm(tmp_path_factory.mktemp("prm") / "shepherd", tiny_tokenizer)


@pytest.mark.parametrize("extra", [[], ["--step-tag", "ки,+,-"]], ids=["registry-tag", "step-tag-option"])
def test_a_local_step_tag_checkpoint_is_scored_by_naming_its_layout(shepherd, extra, capsys):
    argv = ["--discriminator", str(shepherd), "--layout", "step_tag", "--n", "3", "--json", *extra]
    code, out, err = run("evaluate_discriminator", argv, capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n"] == 3


def test_step_tag_option_is_checked_and_used(shepherd, capsys):
    code, _, err = run("evaluate_discriminator", ["--discriminator", str(shepherd), "--layout", "step_tag",
                                                  "--step-tag", "ки,+"], capsys)  # fmt: skip
    assert code == 2 and "--step-tag takes TAG,GOOD,BAD" in err
    from gan_cot.discriminator.model import Discriminator

    disc = Discriminator.from_pretrained(str(shepherd), layout="step_tag", step_tag={"tag": "ки", "good": "-",
                                                                                     "bad": "+"})  # fmt: skip
    assert disc.card.step_tag == {"tag": "ки", "good": "-", "bad": "+"}
    assert disc.card.label_map == {"-": "useful", "+": "wrong"}


def test_the_registry_step_tag_is_the_one_math_shepherd_uses():
    from gan_cot.discriminator.registry import layout_step_tag, load_registry

    tag, names = layout_step_tag()
    assert "math-shepherd" in names and tag == load_registry()["math-shepherd"].scoring["step_tag"]


def test_evaluate_discriminator_scores_every_chain_of_a_file(tmp_path, tiny_disc_dir, capsys):
    lines = [record(i) for i in range(30)] + [{"question": "What is 1 + 1?", "answer": "#### 2"}]  # no chain
    argv = ["--discriminator", str(tiny_disc_dir), "--task", "gsm8k", "--data", write(tmp_path / "d.jsonl", lines),
            "--json"]  # fmt: skip
    code, out, err = run("evaluate_discriminator", argv, capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n"] == 30


def test_a_baseline_that_trains_on_reference_steps_refuses_answer_only_records(tmp_path, tiny_model_dir, capsys):
    lines = [record(i) for i in range(60)]
    lines[6] = {"question": "Ann has 2 pens and buys 3. How many?", "answer": "#### 5"}
    data = write(tmp_path / "d.jsonl", lines)
    split = next(s for s in ("train", "validation", "test") if any(e.id.endswith("-7")
                 for e in Gsm8kTask(path=data).examples(s)))  # fmt: skip
    argv = ["method=c3ot", "task=gsm8k", f"data={data}", f"model={tiny_model_dir}", f"output_dir={tmp_path / 'out'}",
            f"mlflow_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    assert split == "train"  # the split follows from the question's hash: the same on every machine
    code, _, err = run("train_baseline", argv, capsys)
    assert code == 2 and "d.jsonl:7: no solution steps before '####'" in err and "c3ot trains on" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlruns").exists()
