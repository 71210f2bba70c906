"""A table of bad inputs and what the project must do with each: exit non-zero with one clear ``error:`` line that
names the cause (file, line or key), print no traceback, and leave nothing half-written behind.

    python tests/bad_inputs.py            # the table: case | entry point | exit code | message (first line)
    python tests/bad_inputs.py --json     # the table, then one JSON object as the last line

Each :class:`Case` builds its bad input in a fresh folder and runs a real entry point in-process (a script's
``main(argv)``): ``scripts/train_adv.py`` (the main job: data files, configs, checkpoints, output folders) or
``scripts/download_discriminator.py`` (downloads and checkpoint checks), ``scripts/evaluate_discriminator.py``.
A few inputs are cases because they used to be refused and must be accepted (``accepted``: the run finishes).
:func:`run_case` returns an
:class:`Outcome` whose :meth:`Outcome.problems` lists every expectation the run missed. ``tests/test_bad_inputs.py``
runs :data:`CASES`; :func:`main` prints them as a markdown table (cases run in a temporary folder, removed
afterwards; a row whose run missed an expectation shows the problems in bold; exit code 0 when every case was
handled as it should be, else 1).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import functools
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from commands import command as load_script

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import print_json

DEEPSPEED_CONFIG = REPO_ROOT / "configs" / "deepspeed" / "zero0.json"
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"  # runs in seconds, should a bad input slip through the checks
GSM8K_GOOD_LINES = 510  # more than Gsm8kTask's validation_size (500), so the train split is not empty
BAD_LINE = 3  # where the bad record goes: inside the train split


@dataclass(frozen=True)
class Shared:
    """Inputs every case may start from: a tiny policy and a tiny discriminator on its backbone."""

    model_dir: Path
    disc_dir: Path


def build_shared(root: Path, model_dir: Path | None = None) -> Shared:
    """Save a tiny policy (unless ``model_dir`` is given) and a discriminator on its backbone under ``root``."""
    from gan_cot_lab.reliability.tiny import build_tiny_pair

    return Shared(*build_tiny_pair(root, model_dir=model_dir))


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(work, shared)`` writes it under ``work`` and returns the entry point's argv."""

    id: str
    area: str  # data | config | checkpoint | download | output
    script: str  # a script under scripts/ (without .py) whose main(argv) runs
    entry: str  # the command in short, for the table
    build: Callable[[Path, Shared], list[str]]
    expect: tuple[str, ...]  # substrings of the error line; "{work}" stands for the case's folder
    may_create: tuple[str, ...] = ()  # folders (relative to work) the run may leave, empty, behind
    forbid: tuple[str, ...] = ()  # substrings the error line must not hold (options the entry point does not have)
    accepted: bool = False  # an input that must work: exit 0 and a JSON last line (its outputs are not leftovers)


@dataclass
class Outcome:
    case: Case
    work: Path
    code: int | None  # exit code; None when the entry point raised instead of exiting
    stdout: str
    stderr: str
    raised: str  # the traceback of an exception that escaped the entry point, else ""
    leftovers: list[str]
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def message(self) -> str:
        """The error line with the case folder shown as ``<tmp>`` (or what happened instead)."""
        if self.case.accepted and self.code == 0 and not self.raised:
            return "(accepted: the run finished)"
        if self.raised:
            text = self.raised.strip().splitlines()[-1]
        elif self.error_lines:
            text = self.error_lines[0]
        else:
            text = (self.stderr.strip().splitlines() or ["(no message)"])[-1]
        return text.replace(str(self.work), "<tmp>")

    def problems(self) -> list[str]:
        """Every expectation this run missed (empty when the bad input was handled as it should be)."""
        if self.case.accepted:
            return self._accepted_problems()
        out = []
        if self.raised:
            out.append(f"raised instead of exiting: {self.raised.strip().splitlines()[-1]}")
        elif self.code == 0:
            out.append("exited 0: the bad input was accepted")
        if not self.raised and len(self.error_lines) != 1:
            out.append(f"expected one 'error:' line on stderr, got {len(self.error_lines)}")
        if "Traceback" in self.stdout + self.stderr:
            out.append("a traceback was printed")
        line = self.error_lines[0] if self.error_lines else ""
        for needle in self.case.expect:
            needle = needle.replace("{work}", str(self.work))
            if needle not in line:
                out.append(f"the error line does not say {needle!r}")
        for needle in self.case.forbid:
            if needle in line:
                out.append(f"the error line names {needle!r}, which {self.case.script}.py does not have")
        for other, flag in re.findall(r"(\w+)\.py (--[a-z][a-z0-9-]*)", line):  # another script's flag, named so
            if other != self.case.script and flag not in script_options(other):
                out.append(f"the error line names {other}.py {flag}, which {other}.py does not have")
        own = re.sub(r"\w+\.py --[a-z][a-z0-9-]*", "", line)
        for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", own)) - script_options(self.case.script)):
            out.append(f"the error line names {flag}, which {self.case.script}.py does not have")
        if self.leftovers:
            out.append(f"left behind: {', '.join(self.leftovers[:5])}")
        return out

    def _accepted_problems(self) -> list[str]:
        if self.raised:
            return [f"raised: {self.raised.strip().splitlines()[-1]}"]
        if self.code != 0:
            return [f"exited {self.code}: the input was refused ({self.message})"]
        try:
            json.loads(self.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return ["no JSON result on the last line"]
        return []

    def report(self) -> str:
        return (
            f"case {self.case.id}: exit {self.code}\n  problems: {self.problems()}\n"
            f"  stderr (tail): {self.stderr[-2000:]}\n  raised: {self.raised[-3000:]}"
        )


# ------------------------------------------------------------------------------------------------ running


script = functools.cache(load_script)  # scripts/<name>.py as a module, loaded once


@functools.cache
def script_options(name: str) -> set[str]:
    """The ``--flags`` a script's ``--help`` lists."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            script(name).main(["--help"])
        except SystemExit:
            pass
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.getvalue()))


def _tree(root: Path) -> dict[str, bool]:
    """Relative path -> is a folder, for everything under ``root`` (``__pycache__`` aside)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        base = Path(dirpath)
        for d in dirnames:
            out[str((base / d).relative_to(root))] = True
        for f in filenames:
            out[str((base / f).relative_to(root))] = False
    return out


def run_case(case: Case, work: Path, shared: Shared) -> Outcome:
    """Build the case's input under ``work`` (a new folder), run its entry point in-process, collect the outcome."""
    work.mkdir(parents=True, exist_ok=False)
    argv = case.build(work, shared)
    before = _tree(work)
    main = script(case.script).main
    out, err = io.StringIO(), io.StringIO()
    code, raised = None, ""
    started = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv) or 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:  # SystemExit("message"): Python prints the message and exits 1
                code = 1
                print(e.code, file=err)
        except BaseException:  # noqa: BLE001 - whatever escapes is the finding
            raised = traceback.format_exc()
    seconds = time.time() - started
    after = _tree(work)
    # anything new (partial downloads, .tmp folders...) but the folders the case allows
    leftovers = [
        rel + ("/" if is_dir else "")
        for rel, is_dir in sorted(after.items())
        if rel not in before and not (is_dir and rel in case.may_create) and not case.accepted
    ]
    return Outcome(case, work, code, out.getvalue(), err.getvalue(), raised, leftovers, seconds)


# ------------------------------------------------------------------------------------------------ inputs


def _adv(
    work: Path, shared: Shared, *args: str, disc: Path | str | None = None, config: Path = TINY_CONFIG
) -> list[str]:
    """argv of scripts/train_adv.py: ``config`` (the tiny run) on the tiny models, writing only under ``work``."""
    return [
        "--config", str(config), f"model={shared.model_dir}", f"discriminator.name={disc or shared.disc_dir}",
        f"deepspeed={DEEPSPEED_CONFIG}", f"output_dir={work / 'out'}", f"mlflow_dir={work / 'mlruns'}", *args,
    ]  # fmt: skip


def gsm8k_record(i: int, **extra) -> dict:
    return {
        "question": f"Tom has {i} apples and buys 2 more. How many apples does he have?",
        "answer": f"He has {i} + 2 = <<{i}+2={i + 2}>>{i + 2} apples.\n#### {i + 2}",
        **extra,
    }


def write_gsm8k(path: Path, bad: bytes | None, ids: bool = False) -> Path:
    """A GSM8K-style jsonl of good records with ``bad`` as line ``BAD_LINE`` (if given)."""
    lines = [
        json.dumps(gsm8k_record(i, **({"id": f"q{i}"} if ids else {}))).encode()
        for i in range(1, GSM8K_GOOD_LINES + 1)
    ]
    if bad is not None:
        lines.insert(BAD_LINE - 1, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _data_case(bad: bytes | Callable[[], bytes], ids: bool = False):
    def build(work: Path, shared: Shared) -> list[str]:
        data = write_gsm8k(work / "bad.jsonl", bad() if callable(bad) else bad, ids=ids)
        return _adv(work, shared, "task=gsm8k", f"data={data}")

    return build


def _bad_test_split(work: Path, shared: Shared) -> list[str]:
    folder = work / "gsm8k"
    folder.mkdir()
    write_gsm8k(folder / "train.jsonl", None)
    (folder / "test.jsonl").write_text(json.dumps(gsm8k_record(1)) + "\n" + '{"question": "Ann has 3 pens",\n')
    return _adv(work, shared, "task=gsm8k", f"data={folder}")


_GSM8K_RUN = ("discriminator.labels=auto", "discriminator.mode=frozen")  # GSM8K has no gold step labels


def _gsm8k_folder(work: Path, test_bytes: bytes) -> Path:
    folder = work / "gsm8k"
    folder.mkdir()
    write_gsm8k(folder / "train.jsonl", None)
    (folder / "test.jsonl").write_bytes(test_bytes)
    return folder


def _bom(work: Path, shared: Shared) -> list[str]:
    lines = [json.dumps(gsm8k_record(i)).encode() for i in range(1, 6)]
    folder = _gsm8k_folder(work, codecs.BOM_UTF8 + b"\n".join(lines) + b"\n")
    return _adv(work, shared, "task=gsm8k", f"data={folder}", *_GSM8K_RUN)


def _numeric_answer(work: Path, shared: Shared) -> list[str]:
    lines = [json.dumps(gsm8k_record(i)).encode() for i in range(1, 5)]
    lines.insert(1, b'{"question": "Ann has 3 pens and buys 4. How many pens does she have?", "answer": 7}')
    folder = _gsm8k_folder(work, b"\n".join(lines) + b"\n")
    return _adv(work, shared, "task=gsm8k", f"data={folder}", *_GSM8K_RUN)


def _empty_file(work: Path, shared: Shared) -> list[str]:
    (work / "empty.jsonl").write_bytes(b"\n\n")
    return _adv(work, shared, "task=gsm8k", f"data={work / 'empty.jsonl'}")


def _config_case(*overrides: str):
    def build(work: Path, shared: Shared) -> list[str]:
        return _adv(work, shared, *overrides)

    return build


def _bad_yaml(work: Path, shared: Shared) -> list[str]:
    (work / "bad.yaml").write_text("seed: 0\nrounds: [1, 2\npolicy:\n  lr: 1e-3\n")
    return _adv(work, shared, config=work / "bad.yaml")


def _yaml_section_as_value(work: Path, shared: Shared) -> list[str]:
    (work / "bad.yaml").write_text("rounds: 1\nrollout: 8\n")  # a section the case's overrides leave alone
    return _adv(work, shared, config=work / "bad.yaml")


def _yaml_section_overridden(work: Path, shared: Shared) -> list[str]:
    (work / "bad.yaml").write_text("rounds: 1\ndiscriminator: foo\n")  # the case's overrides set discriminator.name
    return _adv(work, shared, config=work / "bad.yaml")


def _copy_disc(work: Path, shared: Shared) -> Path:
    return Path(shutil.copytree(shared.disc_dir, work / "disc"))


def _replace_tokenizer(folder: Path, vocab: dict[str, int], unk: str | None) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[PAD]", unk_token=unk)
    fast.save_pretrained(folder)


def _tokenizer_cannot_encode(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _replace_tokenizer(disc, {"[PAD]": 0, "hello": 1}, unk=None)  # no unknown token: any other word fails
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _tokenizer_unrelated(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    words = ["[UNK]", "[PAD]", "zebra", "quartz", "violin", "harbor", "saffron", "glacier"]
    _replace_tokenizer(disc, {w: i for i, w in enumerate(words)}, unk="[UNK]")
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _label_map(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    config = json.loads((disc / "config.json").read_text())
    config["id2label"] = {"0": "useful", "1": "wrong"}  # no 'redundant'
    config["label2id"] = {"useful": 0, "wrong": 1}
    (disc / "config.json").write_text(json.dumps(config))
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _shrink_vocab(disc: Path, rows: int = 64) -> None:
    from safetensors.torch import load_file, save_file

    config = json.loads((disc / "config.json").read_text())
    config["vocab_size"] = rows
    (disc / "config.json").write_text(json.dumps(config))
    state = load_file(str(disc / "model.safetensors"))
    state["model.embed_tokens.weight"] = state["model.embed_tokens.weight"][:rows].contiguous()
    save_file(state, str(disc / "model.safetensors"), metadata={"format": "pt"})


def _tokenizer_past_vocab(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _shrink_vocab(disc)
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _eval_tokenizer_past_vocab(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _shrink_vocab(disc)
    return ["--discriminator", str(disc), "--n", "5"]


def _add_tokens(folder: Path, n: int = 2) -> None:
    """Add ``n`` tokens to a checkpoint's tokenizer without resizing its embedding (a common slip)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_tokens([f"<extra_{i}>" for i in range(n)])
    tok.save_pretrained(folder)


def _disc_added_tokens(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _add_tokens(disc)
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _eval_disc_added_tokens(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _add_tokens(disc)
    return ["--discriminator", str(disc), "--n", "5"]


def _policy_added_tokens(work: Path, shared: Shared) -> list[str]:
    policy = Path(shutil.copytree(shared.model_dir, work / "policy"))
    _add_tokens(policy)
    return _adv(work, shared, f"model={policy}")


def _evaluate_policy_added_tokens(work: Path, shared: Shared) -> list[str]:
    policy = Path(shutil.copytree(shared.model_dir, work / "policy"))
    _add_tokens(policy)
    return ["--model", str(policy), "--n", "2", "--max-new-tokens", "2"]


def _two_way_prm_without_map(work: Path, shared: Shared) -> list[str]:
    import prm_checkpoints
    from transformers import AutoTokenizer

    prm = prm_checkpoints.trl_prm(work / "prm", AutoTokenizer.from_pretrained(shared.disc_dir))
    return [*_adv(work, shared), "--discriminator", str(prm)]


def _causal_lm_as_discriminator(work: Path, shared: Shared) -> list[str]:
    return [*_adv(work, shared), "--discriminator", str(shared.model_dir)]


def _pickle_for_training(work: Path, shared: Shared) -> list[str]:
    _pickle_weights(work, shared)
    return [*_adv(work, shared), "--discriminator", str(work / "disc")]


def _url_without_sha(work: Path, shared: Shared) -> list[str]:
    return ["--discriminator", _archive(work, shared.disc_dir).as_uri(), "--cache-dir", str(work / "cache")]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _disc_truncated(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    _truncate(disc / "model.safetensors")
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _policy_truncated(work: Path, shared: Shared) -> list[str]:
    policy = Path(shutil.copytree(shared.model_dir, work / "policy"))
    _truncate(policy / "model.safetensors")
    return _adv(work, shared, f"model={policy}")


def _pickle_weights(work: Path, shared: Shared) -> list[str]:
    import torch
    from safetensors.torch import load_file

    disc = _copy_disc(work, shared)
    torch.save(load_file(str(disc / "model.safetensors")), disc / "pytorch_model.bin")
    (disc / "model.safetensors").unlink()
    return [str(disc), "--cache-dir", str(work / "cache")]


def _remote_code(work: Path, shared: Shared) -> list[str]:
    disc = _copy_disc(work, shared)
    config = json.loads((disc / "config.json").read_text())
    config["auto_map"] = {"AutoModelForTokenClassification": "modeling_evil.EvilModel"}
    (disc / "config.json").write_text(json.dumps(config))
    # if this ever ran, the file it writes would show up as a leftover
    (disc / "modeling_evil.py").write_text(f"open({str(work / 'ran-remote-code')!r}, 'w').close()\n")
    return [*_adv(work, shared), "--discriminator", str(disc)]


def _missing_name(work: Path, shared: Shared) -> list[str]:
    return _adv(work, shared, disc="no-such-discriminator")


def _archive(work: Path, src: Path, extra: Callable | None = None) -> Path:
    """A .tar.gz of the discriminator folder ``src`` at its root, plus the members ``extra(tf)`` adds."""
    path = work / "disc.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for f in sorted(src.iterdir()):
            tf.add(f, arcname=f.name)
        if extra is not None:
            extra(tf)
    return path


def _sha_mismatch(work: Path, shared: Shared) -> list[str]:
    archive = _archive(work, shared.disc_dir)
    return [archive.as_uri(), "--sha256", "0" * 64, "--cache-dir", str(work / "cache")]


def _path_traversal(work: Path, shared: Shared) -> list[str]:
    from gan_cot.discriminator.checkpoint import sha256_file

    def evil(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))

    archive = _archive(work, shared.disc_dir, evil)
    return [archive.as_uri(), "--sha256", sha256_file(archive), "--cache-dir", str(work / "cache")]


def _truncated_in_archive(work: Path, shared: Shared) -> list[str]:
    from gan_cot.discriminator.checkpoint import sha256_file

    src = _copy_disc(work, shared)
    _truncate(src / "model.safetensors")
    archive = _archive(work, src)
    return [archive.as_uri(), "--sha256", sha256_file(archive), "--cache-dir", str(work / "cache")]


def _unwritable(work: Path) -> Path:
    """A folder path that cannot be created or written: read-only for a normal user, under a file for root."""
    if os.geteuid() == 0:  # root writes anywhere: a path under a regular file cannot be a folder
        (work / "a-file").write_text("")
        return work / "a-file" / "sub"
    ro = work / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    return ro / "sub"


def _mlflow_unwritable(work: Path, shared: Shared) -> list[str]:
    return _adv(work, shared, f"mlflow_dir={_unwritable(work)}")


def _output_unwritable(work: Path, shared: Shared) -> list[str]:
    return _adv(work, shared, f"output_dir={_unwritable(work)}")


def _cache_unwritable(work: Path, shared: Shared) -> list[str]:
    from gan_cot.discriminator.checkpoint import sha256_file

    archive = _archive(work, shared.disc_dir)
    return [archive.as_uri(), "--sha256", sha256_file(archive), "--cache-dir", str(_unwritable(work))]


def _resume_missing(work: Path, shared: Shared) -> list[str]:
    ckpts = work / "out" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "latest").write_text("round-00003")  # the folder it names is gone
    return [*_adv(work, shared), "--resume"]


_DATA = "train_adv.py task=gsm8k data=bad.jsonl"
_ADV = "train_adv.py"
_DL = "download_discriminator.py"

CASES: list[Case] = [
    # ---- data files (GSM8K-style jsonl)
    Case("data-malformed-json", "data", "train_adv", _DATA, _data_case(b'{"question": "Ann has 3 pens", "answer": '),
         ("bad.jsonl:3", "not valid JSON", "fix or remove the line"), forbid=("--skip-bad", "skip_bad")),
    Case("data-missing-field", "data", "train_adv", _DATA, _data_case(b'{"question": "Ann has 3 pens."}'),
         ("bad.jsonl:3", "missing field 'answer'")),
    Case("data-empty-chain", "data", "train_adv", _DATA,
         _data_case(b'{"question": "Ann has 5 pens.", "answer": "#### 5"}'),  # a train question
         ("bad.jsonl:3", "no solution steps", "training imitates the reference steps", "evaluate.py")),
    Case("data-no-final-answer", "data", "train_adv", _DATA,
         _data_case(b'{"question": "Ann has 3 pens.", "answer": "She has 3 pens."}'),
         ("bad.jsonl:3", "no final answer")),
    Case("data-non-utf8", "data", "train_adv", _DATA,
         _data_case(b'{"question": "Ann has 3 pens \xff\xfe.", "answer": "3\\n#### 3"}'),
         ("bad.jsonl:3", "not valid UTF-8")),
    Case("data-10mb-line", "data", "train_adv", _DATA,
         _data_case(lambda: json.dumps({"question": "x" * (10 << 20), "answer": "1\n#### 1"}).encode()),
         ("bad.jsonl:3", "over the limit")),
    Case("data-duplicate-id", "data", "train_adv", _DATA,
         _data_case(json.dumps(gsm8k_record(99, id="q1")).encode(), ids=True),
         ("bad.jsonl:3", "duplicate id 'q1'", "bad.jsonl:1")),
    Case("data-bad-test-split", "data", "train_adv", "train_adv.py task=gsm8k data=FOLDER (bad test.jsonl)",
         _bad_test_split, ("test.jsonl:2", "not valid JSON")),
    Case("data-empty-file", "data", "train_adv", "train_adv.py task=gsm8k data=empty.jsonl", _empty_file,
         ("empty.jsonl", "holds no records")),
    Case("data-byte-order-mark", "data", "train_adv", "train_adv.py task=gsm8k data=FOLDER (test.jsonl with a BOM)",
         _bom, (), accepted=True),
    Case("data-numeric-answer", "data", "train_adv", 'train_adv.py task=gsm8k data=FOLDER ("answer": 7)',
         _numeric_answer, (), accepted=True),
    Case("data-nul-byte", "data", "train_adv", _DATA,
         _data_case(b'{"question": "Ann has 3\x00 pens.", "answer": "3\\n#### 3"}'),
         ("bad.jsonl:3", "Invalid control character at column", "'\\x00'", "as \\u0000"), forbid=("at at",)),
    Case("data-missing-file", "data", "train_adv", "train_adv.py task=gsm8k data=nowhere.jsonl",
         lambda w, s: _adv(w, s, "task=gsm8k", f"data={w / 'nowhere.jsonl'}"), ("GSM8K data not found", "nowhere")),
    Case("data-missing-file-flag", "data", "train_adv", "train_adv.py task=gsm8k --data nowhere.jsonl",
         lambda w, s: [*_adv(w, s, "task=gsm8k"), "--data", str(w / "nowhere.jsonl")], ("GSM8K data not found", "nowhere")),
    # ---- configs (key=value overrides and YAML files)
    Case("config-unknown-key", "config", "train_adv", "train_adv.py roundz=3", _config_case("roundz=3"),
         ("command line: unknown key 'roundz'",)),
    Case("config-wrong-type", "config", "train_adv", "train_adv.py rounds=many", _config_case("rounds=many"),
         ("command line: rounds: expected an integer, got 'many'",)),
    Case("config-negative-micro-batch", "config", "train_adv", "train_adv.py loss.micro_batch=-4",
         _config_case("loss.micro_batch=-4"), ("loss.micro_batch must be positive, got -4",)),
    Case("config-negative-rollout-batch", "config", "train_adv", "train_adv.py rollout.batch_size=-8",
         _config_case("rollout.batch_size=-8"), ("rollout.batch_size",)),
    Case("config-negative-sft-batch", "config", "train_adv", "train_adv.py sft.batch_size=-2",
         _config_case("sft.batch_size=-2"), ("sft.batch_size",)),
    Case("config-gold-labels-without-gold", "config", "train_adv", "train_adv.py task=gsm8k (tiny.yaml: labels gold)",
         _data_case(None), ("discriminator.labels=gold", "task gsm8k", "discriminator.labels=auto")),
    Case("config-section-as-value", "config", "train_adv", "train_adv.py discriminator=foo",
         _config_case("discriminator=foo"), ("command line: discriminator=foo", "discriminator.name="),
         forbid=("tiny.yaml",)),
    Case("config-yaml-section-as-value", "config", "train_adv", "train_adv.py --config bad.yaml (rollout: 8)",
         _yaml_section_as_value, ("bad.yaml: rollout: expected a mapping",), forbid=("bad.yaml.rollout",)),
    Case("config-yaml-section-overridden", "config", "train_adv",
         "train_adv.py --config bad.yaml (discriminator: foo) discriminator.name=DISC", _yaml_section_overridden,
         ("bad.yaml: discriminator: expected a mapping (a section), got 'foo'",)),
    Case("config-folder", "config", "train_adv", "train_adv.py --config configs/",
         lambda w, s: _adv(w, s, config=REPO_ROOT / "configs"), ("configs is a folder", "one YAML file")),
    Case("config-bad-yaml", "config", "train_adv", "train_adv.py --config bad.yaml", _bad_yaml,
         ("bad.yaml:", "not valid YAML")),
    # ---- checkpoints (discriminator and policy folders)
    Case("ckpt-tokenizer-cannot-encode", "checkpoint", "train_adv", "train_adv.py --discriminator DISC",
         _tokenizer_cannot_encode, ("tokenizer cannot encode a chain", "disc")),
    Case("ckpt-tokenizer-unrelated-vocab", "checkpoint", "train_adv", "train_adv.py --discriminator DISC",
         _tokenizer_unrelated, ("unknown token", "vocabulary does not fit")),
    Case("ckpt-label-map-mismatch", "checkpoint", "train_adv", "train_adv.py --discriminator DISC", _label_map,
         ("disc", "['redundant']", "the model's labels are ['useful', 'wrong']", "--label-map")),
    Case("ckpt-truncated-safetensors", "checkpoint", "train_adv", "train_adv.py --discriminator DISC",
         _disc_truncated, ("model.safetensors", "truncated")),
    Case("ckpt-policy-truncated-safetensors", "checkpoint", "train_adv", "train_adv.py model=POLICY",
         _policy_truncated, ("policy/model.safetensors", "truncated")),
    Case("ckpt-pickle-weights", "checkpoint", "download_discriminator", f"{_DL} DISC", _pickle_weights,
         ("pytorch_model.bin", "pickle", "convert them to safetensors")),
    Case("ckpt-pickle-weights-train", "checkpoint", "train_adv", "train_adv.py --discriminator DISC (pickle)",
         _pickle_for_training, ("pytorch_model.bin", "safetensors only", "download_discriminator.py --allow-pickle")),
    Case("ckpt-tokenizer-past-vocab", "checkpoint", "train_adv", "train_adv.py --discriminator DISC (64 rows)",
         _tokenizer_past_vocab, ("disc", "the tokenizer has ids up to", "embedding has 64 rows", "vocab_size")),
    Case("ckpt-tokenizer-past-vocab-eval", "checkpoint", "evaluate_discriminator",
         "evaluate_discriminator.py --discriminator DISC (64 rows)", _eval_tokenizer_past_vocab,
         ("disc", "embedding has 64 rows")),
    Case("ckpt-tokenizer-added-tokens", "checkpoint", "train_adv", "train_adv.py --discriminator DISC (+2 tokens)",
         _disc_added_tokens, ("disc", "len(tokenizer)", "embedding has", "resize_token_embeddings")),
    Case("ckpt-tokenizer-added-tokens-eval", "checkpoint", "evaluate_discriminator",
         "evaluate_discriminator.py --discriminator DISC (+2 tokens)", _eval_disc_added_tokens,
         ("disc", "len(tokenizer)", "embedding has")),
    Case("ckpt-policy-added-tokens", "checkpoint", "train_adv", "train_adv.py model=POLICY (+2 tokens)",
         _policy_added_tokens, ("model:", "policy", "len(tokenizer)", "embedding has")),
    Case("ckpt-policy-added-tokens-evaluate", "checkpoint", "evaluate", "evaluate.py --model POLICY (+2 tokens)",
         _evaluate_policy_added_tokens, ("--model", "policy", "len(tokenizer)", "embedding has")),
    Case("ckpt-two-way-prm-no-label-map", "checkpoint", "train_adv", "train_adv.py --discriminator TRL-PRM",
         _two_way_prm_without_map, ("prm", "['LABEL_0', 'LABEL_1']", "--label-map LABEL_0=wrong,LABEL_1=useful")),
    Case("ckpt-causal-lm-as-discriminator", "checkpoint", "train_adv", "train_adv.py --discriminator POLICY",
         _causal_lm_as_discriminator, ("LlamaForCausalLM", "discriminator.layout=step_tag")),
    Case("ckpt-remote-code", "checkpoint", "train_adv", "train_adv.py --discriminator DISC", _remote_code,
         ("config.json", "auto_map", "refuses to run code")),
    Case("ckpt-resume-missing-checkpoint", "checkpoint", "train_adv", "train_adv.py --resume (latest -> gone)",
         _resume_missing, ("round-00003",),),
    # ---- downloads
    Case("download-sha256-mismatch", "download", "download_discriminator", f"{_DL} file://disc.tar.gz --sha256 0…",
         _sha_mismatch, ("sha256 mismatch", "disc.tar.gz"), may_create=("cache",)),
    Case("download-path-traversal", "download", "download_discriminator", f"{_DL} file://disc.tar.gz (../evil.txt)",
         _path_traversal, ("unsafe archive", "'../evil.txt'"), may_create=("cache",)),
    Case("download-truncated-safetensors", "download", "download_discriminator",
         f"{_DL} file://disc.tar.gz (truncated weights)", _truncated_in_archive, ("refused", "truncated"),
         may_create=("cache",)),
    Case("download-missing-name", "download", "train_adv", "train_adv.py discriminator.name=no-such-discriminator",
         _missing_name, ("unknown discriminator 'no-such-discriminator'", "ledger-tiny")),
    Case("download-url-without-sha256", "download", "evaluate_discriminator",
         "evaluate_discriminator.py --discriminator file://disc.tar.gz", _url_without_sha,
         ("disc.tar.gz", "needs its sha256", "--sha256 HEX")),
    Case("download-cache-unwritable", "download", "download_discriminator", f"{_DL} URL --cache-dir UNWRITABLE",
         _cache_unwritable, ("cache folder", "cannot be written")),
    # ---- outputs
    Case("output-mlflow-unwritable", "output", "train_adv", "train_adv.py mlflow_dir=UNWRITABLE",
         _mlflow_unwritable, ("MLflow store", "cannot be written", "mlflow_dir=")),
    Case("output-folder-unwritable", "output", "train_adv", "train_adv.py output_dir=UNWRITABLE",
         _output_unwritable, ("output folder", "cannot be written", "output_dir=")),
]  # fmt: skip


def markdown_table(outcomes: list[Outcome]) -> str:
    """case | entry point | exit code | message (first line, with the missed expectations in bold)."""
    rows = ["| case | entry point | exit code | message (first line) |", "|---|---|---|---|"]
    for item in outcomes:
        code, msg = str(item.code) if item.code is not None else "raised", item.message
        if item.problems():
            msg += f" **[{'; '.join(item.problems())}]**"
        msg = msg.replace("|", "\\|")
        rows.append(f"| {item.case.id} | `{item.case.entry}` | {code} | {msg} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--only", nargs="*", default=None, help="run only these case ids")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    cases = [c for c in CASES if not args.only or c.id in args.only]
    unknown = sorted(set(args.only or ()) - {c.id for c in CASES})
    if unknown:
        print(f"error: unknown case ids {unknown}; see tests/bad_inputs.py", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="gan-cot-bad-inputs-"))
    try:
        shared = build_shared(root / "shared")
        outcomes = [run_case(case, root / "cases" / case.id, shared) for case in cases]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(markdown_table(outcomes))
    rows = [
        {"case": o.case.id, "area": o.case.area, "entry": o.case.entry, "exit_code": o.code, "message": o.message,
         "problems": o.problems(), "seconds": round(o.seconds, 2)}
        for o in outcomes
    ]  # fmt: skip
    failed = [r["case"] for r in rows if r["problems"]]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} cases handled; failed: {', '.join(failed) or 'none'}")
    if args.json:
        print_json({"cases": rows, "handled": len(rows) - len(failed), "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
