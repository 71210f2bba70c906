"""Generated malformed inputs through the loaders: every GSM8K line and every checkpoint ends in a clear error naming
where it is, or in a correct load; none in a traceback, none leaving an MLflow run behind.

The generators are seeded, so a failure names a case that reproduces.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import traceback
from pathlib import Path

import pytest
from bad_inputs import _adv, build_shared, script

from gan_cot.tasks import TaskDataError
from gan_cot.tasks.gsm8k import MAX_LINE_BYTES, Gsm8kTask

GOOD = {"question": "Tom has 3 apples and buys 2 more. How many?", "answer": "3 + 2 = <<3+2=5>>5 apples\n#### 5"}
JUNK = ["", " ", "\x00", "\x07", "\ufeff", "\ud800", "é", "####", "<<", ">>", "\n", "\\", '"', "{", "}", "[", "]",
        "NaN", "1e999", "-", "=", "<<1/0=1>>"]  # fmt: skip
VALUES = [None, True, 0, -1, 1.5, 1e308, "", " ", [], {}, ["a"], {"a": 1}, "#### ", "####", "no marker", "#### x"]


def _mutations(rng: random.Random) -> bytes:
    """One malformed (or merely odd) GSM8K line."""
    good = json.dumps(GOOD)
    kind = rng.randrange(12)
    if kind == 0:  # cut anywhere
        return good.encode()[: rng.randrange(len(good))]
    if kind == 1:  # a raw byte anywhere
        raw = bytearray(good.encode())
        raw.insert(rng.randrange(len(raw)), rng.randrange(256))
        return bytes(raw)
    if kind == 2:  # a field gone or renamed
        record = dict(GOOD)
        key = rng.choice(list(record))
        value = record.pop(key)
        if rng.random() < 0.5:
            record[key.upper()] = value
        return json.dumps(record).encode()
    if kind == 3:  # a field of another type
        record = {**GOOD, rng.choice(["question", "answer", "id"]): rng.choice(VALUES)}
        return json.dumps(record).encode()
    if kind == 4:  # junk inside a field
        key = rng.choice(["question", "answer"])
        text = GOOD[key]
        at = rng.randrange(len(text) + 1)
        return json.dumps({**GOOD, key: text[:at] + rng.choice(JUNK) + text[at:]}).encode()
    if kind == 5:  # not an object
        return json.dumps(rng.choice([[GOOD], "text", 5, None, True, [1, 2]])).encode()
    if kind == 6:  # nested deeper than any parser's stack
        depth = rng.choice([100, 5000, 100000])
        return (
            ("[" * depth + "]" * depth).encode()
            if rng.random() < 0.5
            else ('{"a":' * depth + "1" + "}" * depth).encode()
        )
    if kind == 7:  # JSON's non-standard numbers
        return f'{{"question": "q?", "answer": {rng.choice(["NaN", "Infinity", "-Infinity", "1e999"])}}}'.encode()
    if kind == 8:  # a line over the size limit
        return json.dumps({"question": "x" * (MAX_LINE_BYTES + rng.randrange(10)), "answer": "1\n#### 1"}).encode()
    if kind == 9:  # odd answers
        answer = rng.choice(["#### ", "1\n####", "####\n####", "\n\n#### 5", "a\n#### 1{,}000", "#### \\frac12",
                             "<<2+2=5>>\n#### 4", "<<2**99999=1>>\n#### 1", "#### " + "9" * 400])  # fmt: skip
        return json.dumps({**GOOD, "answer": answer}).encode()
    if kind == 10:  # two records on one line, or a trailing comma
        return rng.choice([good + good, good + ",", good[:-1] + ",}"]).encode()
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))  # noise


def malformed_lines(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [_mutations(rng) for _ in range(n)]


def _check_example(ex) -> None:
    assert isinstance(ex.question, str) and ex.question.strip()
    assert isinstance(ex.answer, str) and ex.answer
    assert all(isinstance(s, str) and s for s in ex.steps)


@pytest.mark.parametrize("chunk", range(4))
def test_generated_malformed_gsm8k_lines_end_in_a_clear_error_or_a_load(tmp_path, chunk):
    lines = malformed_lines(240, seed=0)[chunk * 60 : (chunk + 1) * 60]
    good = json.dumps(GOOD).encode()
    outcomes = {"error": 0, "load": 0}
    for i, line in enumerate(lines):
        path = tmp_path / f"case{i}.jsonl"
        path.write_bytes(good + b"\n" + line + b"\n")  # the malformed line is line 2
        try:
            examples = Gsm8kTask(path=path, split_file=False).examples("test")
        except TaskDataError as e:
            message = str(e)
            assert f"case{i}.jsonl" in message and "\n" not in message, (line[:200], message)
            assert f"case{i}.jsonl:2" in message or "holds no records" in message, (line[:200], message)
            outcomes["error"] += 1
            continue
        except Exception:  # noqa: BLE001 - the finding
            pytest.fail(f"line {line[:200]!r} raised:\n{traceback.format_exc()}")
        for ex in examples:
            _check_example(ex)
        outcomes["load"] += 1
        skipping = Gsm8kTask(path=path, split_file=False, skip_bad=True)  # never raises on a line
        assert len(skipping.examples("test")) + skipping.skipped_lines == 2 - (not line.strip())
    assert outcomes["error"] >= 30  # most generated lines are refused, by line


# ------------------------------------------------------------------------------------------------ checkpoints


def _json_edit(name: str, edit):
    def mutate(folder: Path, rng: random.Random) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        edit(data, rng)
        path.write_text(json.dumps(data))

    return mutate


def _set(key, value):
    return _json_edit("config.json", lambda d, rng: d.__setitem__(key, value))


def _random_config_field(seed: int):
    def mutate(folder: Path, rng: random.Random) -> None:
        rng = random.Random(seed)
        path = folder / "config.json"
        data = json.loads(path.read_text())
        for key in rng.sample(sorted(data), 3):
            data[key] = rng.choice([None, -1, 0, 1, 10**9, "x", [], {}, True, 0.5])
        path.write_text(json.dumps(data))

    return mutate


def _write(name: str, data: bytes):
    return lambda folder, rng: (folder / name).write_bytes(data)


def _truncate_weights(fraction: float):
    def mutate(folder: Path, rng: random.Random) -> None:
        path = folder / "model.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return mutate


def _added_tokens(folder: Path, rng: random.Random) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<step>"]})
    tok.save_pretrained(folder)


def _unrelated_tokenizer(folder: Path, rng: random.Random) -> None:
    from bad_inputs import _replace_tokenizer

    words = ["[UNK]", "[PAD]", "zebra", "quartz", "violin", "harbor"]
    _replace_tokenizer(folder, {w: i for i, w in enumerate(words)}, unk="[UNK]")


def _other_width_weights(folder: Path, rng: random.Random) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k in sorted(state) if k.endswith("q_proj.weight"))
    state[name] = state[name][:, :-1].contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


CHECKPOINT_MUTATIONS = {
    "weights-truncated-half": _truncate_weights(0.5),
    "weights-truncated-header": _truncate_weights(0.0001),
    "weights-noise": _write("model.safetensors", bytes(range(256)) * 4),
    "weights-tensor-shape": _other_width_weights,
    "config-not-json": _write("config.json", b"{config"),
    "config-a-list": _write("config.json", b"[1, 2]"),
    "config-vocab-small": _set("vocab_size", 16),
    "config-vocab-text": _set("vocab_size", "many"),
    "config-hidden-size": _set("hidden_size", 48),
    "config-model-type": _set("model_type", "no-such-model"),
    "config-architecture": _set("architectures", ["NoSuchModelForTokenClassification"]),
    "config-no-labels": _json_edit("config.json", lambda d, rng: (d.pop("id2label"), d.pop("label2id"))),
    "config-random-fields-1": _random_config_field(1),
    "config-random-fields-2": _random_config_field(2),
    "config-random-fields-3": _random_config_field(3),
    "tokenizer-added-special": _added_tokens,
    "tokenizer-unrelated": _unrelated_tokenizer,
    "tokenizer-not-json": _write("tokenizer.json", b"\x00\x01"),
    "card-not-json": _write("discriminator_card.json", b"{"),
    "card-unknown-key": _json_edit("discriminator_card.json", lambda d, rng: d.__setitem__("colour", "red")),
    "card-bad-layout": _json_edit("discriminator_card.json", lambda d, rng: d.__setitem__("layout", "sideways")),
    "card-bad-label-map": _json_edit("discriminator_card.json", lambda d, rng: d.__setitem__("label_map", {"x": "y"})),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    return build_shared(tmp_path_factory.mktemp("fuzz"), model_dir=tiny_model_dir)


def _run(name: str, argv: list[str]) -> tuple[int | None, str, str]:
    out, err, code = io.StringIO(), io.StringIO(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = script(name).main(argv) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # noqa: BLE001 - the finding
            return None, out.getvalue(), traceback.format_exc()
    return code, out.getvalue(), err.getvalue()


def test_the_checkpoint_mutations_are_at_least_twenty():
    assert len(CHECKPOINT_MUTATIONS) >= 20


@pytest.mark.parametrize("kind", sorted(CHECKPOINT_MUTATIONS))
def test_a_malformed_discriminator_ends_in_a_clear_error_or_a_load(kind, shared, tmp_path):
    disc = Path(shutil.copytree(shared.disc_dir, tmp_path / "disc"))
    CHECKPOINT_MUTATIONS[kind](disc, random.Random(kind))
    code, out, err = _run("evaluate_discriminator", ["--discriminator", str(disc), "--n", "3", "--json"])
    assert code is not None, f"{kind} raised:\n{err}"
    assert "Traceback" not in out + err, err
    if code == 0:  # a correct load: it scored the chains
        assert json.loads(out.strip().splitlines()[-1])["n"] == 3
        return
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(disc) in errors[0], err
    assert err.strip().splitlines()[-1] == errors[0], f"{kind}: the error runs over several lines:\n{err[-2000:]}"
    # training refuses it too, before a run exists
    code, out, err = _run("train_adv", [*_adv(tmp_path, shared), "--discriminator", str(disc)])
    assert code not in (None, 0), f"{kind}: train_adv accepted what evaluation refused\n{err[-2000:]}"
    assert "Traceback" not in out + err and sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


POLICY_MUTATIONS = {
    "weights-truncated": _truncate_weights(0.5),
    "weights-tensor-shape": _other_width_weights,
    "config-not-json": _write("config.json", b"{config"),
    "config-vocab-small": _set("vocab_size", 16),
    "config-random-fields-4": _random_config_field(4),
    "config-random-fields-5": _random_config_field(5),
    "tokenizer-added-special": _added_tokens,
    "tokenizer-not-json": _write("tokenizer.json", b"\x00\x01"),
}


@pytest.mark.parametrize("kind", sorted(POLICY_MUTATIONS))
def test_a_malformed_policy_ends_in_a_clear_error_or_a_load(kind, shared, tmp_path):
    policy = Path(shutil.copytree(shared.model_dir, tmp_path / "policy"))
    POLICY_MUTATIONS[kind](policy, random.Random(kind))
    code, out, err = _run("evaluate", ["--model", str(policy), "--n", "2", "--max-new-tokens", "2", "--json"])
    assert code is not None, f"{kind} raised:\n{err}"
    assert "Traceback" not in out + err, err
    if code == 0:
        assert json.loads(out.strip().splitlines()[-1])["n"] == 2
        return
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(policy) in errors[0] and err.strip().splitlines()[-1] == errors[0], err
    code, out, err = _run("train_adv", _adv(tmp_path, shared, f"model={policy}"))
    assert code not in (None, 0), f"{kind}: train_adv accepted what evaluation refused\n{err[-2000:]}"
    assert "Traceback" not in out + err and sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


def test_refused_gsm8k_lines_leave_no_run_behind(shared, tmp_path):
    refused = 0
    for i, line in enumerate(malformed_lines(240, seed=0)):
        path = tmp_path / f"case{i}.jsonl"
        path.write_bytes(json.dumps(GOOD).encode() + b"\n" + line + b"\n")
        try:
            Gsm8kTask(path=path).examples("test")
            continue
        except TaskDataError:
            pass
        work = tmp_path / f"work{i}"
        code, out, err = _run("train_adv", _adv(work, shared, "task=gsm8k", f"data={path}"))
        assert code == 2 and "Traceback" not in out + err and f"case{i}.jsonl:2" in err, err[-2000:]
        assert not work.exists(), sorted(p.name for p in work.rglob("*"))
        refused += 1
        if refused == 12:
            break
    assert refused == 12
