"""GSM8K (grade-school math word problems) as a task.

Each line of GSM8K's jsonl files is ``{"question": ..., "answer": "step\\nstep\\n#### 72"}``. The
reference chain is the solution lines before the ``####`` line and the final answer is what follows
``####``. Solution lines carry calculator annotations like ``48/2 = <<48/2=24>>24``; each one is
checked with a safe arithmetic evaluator (``meta["calc_ok"]``) and removed from the steps unless
``keep_calculator=True``. A step whose annotation is wrong can be labelled ``wrong`` for the
discriminator (:func:`calculator_labels`).

Data comes from a folder holding ``train.jsonl`` and ``test.jsonl`` (or one .jsonl file: split three ways
by question where training needs splits, read whole where a file is evaluated), or from a ``datasets`` dataset
(hub id, config ``main``, or a local dataset folder). An ``answer`` that is a number, or only ``#### value``,
gives an answer-only example: no reference steps. Evaluation needs nothing else; what trains on reference steps
refuses such records (:meth:`Gsm8kTask.require_steps`).
"""

from __future__ import annotations

import ast
import codecs
import json
import logging
import math
import operator
import os
import re
from pathlib import Path

from gan_cot.steps import split_steps
from gan_cot.tasks.base import ANSWER_MARKER, Example, TaskBase, TaskDataError, normalize_number
from gan_cot.tasks.splits import assign_splits, question_key

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
ENV_VAR = "GAN_COT_GSM8K"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "gsm8k"
CALC_REL_TOL = 1e-4
# One record is a question and its solution: real GSM8K lines are under 2 KB. A longer line is a broken
# file (records run together, a binary blob), refused before it is parsed and tokenized.
MAX_LINE_BYTES = 1 << 20

_ANNOTATION_RE = re.compile(r"<<(.*?)>>")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BIN_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _eval_node(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        value = _BIN_OPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
        # float ** fractional power of a negative base gives a complex number
        if not isinstance(value, float) or not math.isfinite(value):
            raise ValueError("result is not a finite real number")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_eval_node(node.operand))
    raise ValueError(f"unsupported expression element {type(node).__name__}")


def safe_eval(expr: str) -> float:
    """Value of an arithmetic expression: numbers, ``+ - * / // % **``, unary signs and parentheses.

    Thousands commas and ``$`` signs are ignored. Never calls ``eval``: the expression is parsed with
    :mod:`ast` and anything else (names, calls, attributes, ...) raises ValueError, as do division by
    zero and overflow. Arithmetic is done in floats.
    """
    cleaned = _THOUSANDS_RE.sub("", expr.replace("$", "")).strip()
    if not cleaned:
        raise ValueError("empty expression")
    try:
        tree = ast.parse(cleaned, mode="eval")
        return _eval_node(tree)
    except (SyntaxError, ZeroDivisionError, OverflowError, TypeError, RecursionError) as e:
        raise ValueError(f"cannot evaluate {expr!r}: {e}") from e


def _annotation_ok(body: str) -> bool:
    expr, sep, stated = body.rpartition("=")
    if not sep:
        return False
    try:
        return math.isclose(safe_eval(expr), safe_eval(stated), rel_tol=CALC_REL_TOL, abs_tol=1e-9)
    except ValueError:
        return False


def check_calculator(step_text: str) -> bool | None:
    """Whether a step's ``<<expr=value>>`` annotations are right.

    None when the step has no annotation; False when any annotation's arithmetic is wrong (beyond a
    relative tolerance of 1e-4) or cannot be parsed (including an unclosed ``<<``); True otherwise.
    """
    bodies = _ANNOTATION_RE.findall(step_text)
    leftover = _ANNOTATION_RE.sub("", step_text)
    if not bodies and "<<" not in leftover:
        return None
    if "<<" in leftover:
        return False
    return all(_annotation_ok(b) for b in bodies)


def strip_calculator(step_text: str) -> str:
    """A step without its ``<<...>>`` annotations: ``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``."""
    return _ANNOTATION_RE.sub("", step_text).strip()


def calculator_labels(example: Example) -> list[str | None]:
    """Per step: ``"wrong"`` where the calculator annotation is wrong, else None (no evidence either way)."""
    calc_ok = example.meta.get("calc_ok")
    if calc_ok is None:
        return [None] * len(example.steps)
    return ["wrong" if ok is False else None for ok in calc_ok]


def parse_record(record, id: str, keep_calculator: bool = False) -> Example:
    """An :class:`Example` from one GSM8K record (a dict with ``question`` and ``answer``, optionally ``id``).

    ``answer`` is a solution (steps, then ``#### value``), ``#### value`` alone or a number (both answer-only
    examples: no steps).

    An ``id`` field (a string or an integer) is kept in ``meta["record_id"]``; the task refuses a split in
    which two records share one. Raises ValueError naming the problem; the caller adds where the record
    came from.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with 'question' and 'answer', got {type(record).__name__}")
    for key in ("question", "answer"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
    if not isinstance(record["question"], str):
        raise ValueError("field 'question' is not a string")
    answer = record["answer"]
    number = isinstance(answer, (int, float)) and not isinstance(answer, bool)
    if number and not math.isfinite(answer):
        raise ValueError(f"field 'answer' is not a finite number, got {answer!r}")
    if not number and not isinstance(answer, str):
        raise ValueError(f"field 'answer' is not a solution string or a number, got {type(answer).__name__}")
    record_id = record.get("id")
    if "id" in record and (isinstance(record_id, bool) or not isinstance(record_id, (str, int)) or record_id == ""):
        raise ValueError(f"field 'id' must be a non-empty string or an integer, got {record_id!r}")
    question = record["question"].strip()
    if not question:
        raise ValueError("empty question")
    meta = {"record_id": record_id} if record_id is not None else {}
    if number:  # the answer alone, no solution: nothing to imitate, still a question to answer
        value = normalize_number(str(answer))
        return Example(id=id, question=question, steps=[], answer=value, difficulty=0,
                       meta={"raw_steps": [], "calc_ok": [], **meta})  # fmt: skip
    body, marker, final = answer.rpartition(ANSWER_MARKER)
    final = final.strip()
    if not marker or not final:
        raise ValueError(f"no final answer after {ANSWER_MARKER!r}")
    raw_steps = [s.text for s in split_steps(body, "\n")]
    # A line that is nothing but an annotation would strip to nothing: keep it as it is.
    steps = list(raw_steps) if keep_calculator else [strip_calculator(s) or s for s in raw_steps]
    return Example(
        id=id,
        question=question,
        steps=steps,
        answer=normalize_number(final),
        difficulty=len(raw_steps),
        meta={
            "raw_steps": raw_steps,
            "calc_ok": [check_calculator(s) for s in raw_steps],
            **meta,
        },
    )


class Gsm8kTask(TaskBase):
    """GSM8K with the project's task protocol.

    ``path`` is a folder holding ``train.jsonl`` and ``test.jsonl``, or one .jsonl file that every
    split reads (``split_file=False``: every split is the whole file, for evaluating a file); by default the first that exists of ``$GAN_COT_GSM8K`` and ``<repo>/../shared/data/gsm8k``.
    ``dataset`` is instead a ``datasets`` hub id (loaded with config ``main``) or a local dataset folder.

    Splits (:mod:`gan_cot.tasks.splits`), decided by each record's question so that no test question reaches
    training: ``test`` is the test data (a single file: about 15% of its questions, unless ``split_file=False``); ``validation`` takes
    ``validation_size`` records of the rest, at most a tenth; ``train`` the others (a folder's train data less any
    question of its test data). A file is checked whole when a split first reads it: a bad line raises
    :class:`TaskDataError` naming file and line, or with ``skip_bad=True`` is skipped, counted in
    ``self.skipped[split]`` of the split it falls in (:attr:`skipped_lines`: every bad line of the data read) and
    reported in one warning. A file may start with a UTF-8 byte-order mark; an empty file is named in the error.
    """

    name = "gsm8k"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        dataset: str | None = None,
        skip_bad: bool = False,
        validation_size: int = 500,
        keep_calculator: bool = False,
        split_file: bool = True,
    ):
        if path is not None and dataset is not None:
            raise ValueError("pass either path= (jsonl files) or dataset= (a datasets id or folder), not both")
        if validation_size < 0:
            raise ValueError(f"validation_size must be >= 0, got {validation_size}")
        self.skip_bad = skip_bad
        self.validation_size = validation_size
        self.keep_calculator = keep_calculator
        self.split_file = split_file
        self.dataset = dataset
        self.path = None if dataset is not None else self._resolve_path(path)
        self.skipped: dict[str, int] = {}
        self.answer_only: dict[str, list[str]] = {}  # split -> where its answer-only records are
        self._cache: dict[str, list[Example]] = {}
        self._sources: dict[str, tuple] = {}
        self._hf = None

    @staticmethod
    def _resolve_path(path) -> Path:
        if path is not None:
            p = Path(path).expanduser()
            if not p.exists():
                raise TaskDataError(
                    f"GSM8K data not found at {p}; pass path= (--data) a folder holding train.jsonl and test.jsonl "
                    "or a .jsonl file"
                )
            return p
        looked = []
        env = os.environ.get(ENV_VAR)
        if env:
            looked.append(f"${ENV_VAR}={env}")
            if Path(env).expanduser().exists():
                return Path(env).expanduser()
        else:
            looked.append(f"${ENV_VAR} (not set)")
        default = DEFAULT_DIR.resolve()
        looked.append(str(default))
        if default.exists():
            return default
        raise TaskDataError(
            f"GSM8K data not found; looked at {', '.join(looked)}. Pass path= (--data) a folder holding "
            f"train.jsonl and test.jsonl or a .jsonl file, set ${ENV_VAR}, or pass dataset= a datasets id or folder."
        )

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        """The examples of ``split`` (``train`` / ``validation`` / ``test``), the first ``n`` if given."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        if split not in self._cache:
            self._cache[split] = self._load(split)
        items = self._cache[split]
        return list(items if n is None else items[:n])

    @property
    def whole_file(self) -> bool:
        """Whether every split is the whole of one file (``split_file=False`` on a .jsonl file)."""
        return not self.split_file and self.dataset is None and not self.path.is_dir()

    @property
    def skipped_lines(self) -> int:
        """Bad lines skipped (``skip_bad``) in all the data read so far, whichever split they fall in."""
        return sum(isinstance(e[2], ValueError) for _, entries in self._sources.values() for e in entries)

    def split_sizes(self) -> dict[str, int]:
        """Records per split (every split read)."""
        return {split: len(self.examples(split)) for split in SPLITS}

    def require_steps(self, split: str, why: str = "training imitates reference steps") -> None:
        """Refuse answer-only records in ``split`` (what trains on reference chains cannot use them)."""
        self.examples(split)
        where = self.answer_only.get(split)
        if where:
            more = f" (and {len(where) - 1} more answer-only record(s))" if len(where) > 1 else ""
            raise TaskDataError(
                f"{where[0]}: no solution steps before {ANSWER_MARKER!r}{more}; {why}: add the solution lines or "
                "remove the line (answer-only records are read by evaluation, scripts/evaluate.py)"
            )

    # --- loading -----------------------------------------------------------------------------------

    def _load(self, split: str) -> list[Example]:
        where, entries = self._source(split)
        test_source = self.dataset is not None or self.path.is_dir()  # a test split of its own
        if self.whole_file or (test_source and split == "test"):
            chosen = entries
        else:
            test_keys = None
            if test_source:  # a folder without test.jsonl has no test question to hold out
                missing = self.dataset is None and not (self.path / "test.jsonl").is_file()
                test_keys = set() if missing else {key for *_, key in self._source("test")[1]}
            assigned = assign_splits([key for *_, key in entries], self.validation_size, test_keys)
            chosen = [e for e, s in zip(entries, assigned) if s == split]
            if split == "train" and not chosen:
                raise TaskDataError(
                    f"{where} has {len(entries)} records, too few to split into train, validation and test "
                    "questions; add records, or give a folder holding train.jsonl and test.jsonl"
                )
        examples, bad, answer_only = [], [], []
        for number, loc, parsed, _ in chosen:
            if isinstance(parsed, ValueError):  # only with skip_bad: otherwise reading the file raised it
                bad.append(f"{loc} ({parsed})")
                continue
            examples.append(parse_record(parsed, id=f"gsm8k-{split}-{number}", keep_calculator=self.keep_calculator))
            if not examples[-1].steps:
                answer_only.append(loc)
        self.skipped[split] = len(bad)
        self.answer_only[split] = answer_only
        if bad:
            shown = "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
            log.warning("gsm8k %s: skipped %d bad line(s) of %s: %s", split, len(bad), where, shown)
        return examples

    def _source(self, split: str):
        """``(where, entries)`` of the data ``split`` is drawn from, read and checked whole the first time (a bad line
        anywhere in it raises, unless ``skip_bad``): entries ``(number, location, record or the ValueError it
        raised, question key)``."""
        name = "test" if split == "test" else "train"
        if name not in self._sources:
            where, rows = self._dataset_rows(name) if self.dataset is not None else self._jsonl_rows(name)
            entries, ids = [], {}  # record id -> where it first appeared
            for number, loc, parse in rows:
                try:
                    parsed = parse()
                    record_id = parse_record(parsed, id="check").meta.get("record_id")
                    if record_id is not None and record_id in ids:
                        raise ValueError(f"duplicate id {record_id!r} (first used at {ids[record_id]})")
                    ids.setdefault(record_id, loc)
                except ValueError as e:  # also json.JSONDecodeError and UnicodeDecodeError
                    if not self.skip_bad:
                        raise TaskDataError(f"{loc}: {e}; fix or remove the line") from e
                    parsed = e
                record = parsed if isinstance(parsed, dict) else {}
                key = question_key(record["question"]) if isinstance(record.get("question"), str) else loc
                entries.append((number, loc, parsed, key))
            if not entries:
                raise TaskDataError(f"{where} holds no records; a GSM8K file has one JSON object per line")
            self._sources[name] = (where, entries)
        return self._sources[name]

    def _jsonl_rows(self, name: str):
        if self.path.is_dir():
            file = self.path / f"{name}.jsonl"
            if not file.is_file():
                raise TaskDataError(
                    f"{file} not found; the GSM8K folder {self.path} must hold train.jsonl and test.jsonl"
                )
        else:
            file = self.path
        data = file.read_bytes()
        data = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data  # editors on Windows
        # Blank lines are not records; line numbers stay those of the file.
        lines = [(i, raw) for i, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]

        def decode(raw: bytes):
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"line is {len(raw)} bytes, over the limit of {MAX_LINE_BYTES} bytes for one record")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from e
            try:
                return json.loads(text)
            except RecursionError:
                raise ValueError("not valid for a record (JSON nested too deeply to read)") from None
            except json.JSONDecodeError as e:  # some messages end in " at" ("Invalid control character at")
                msg = f"{e.msg.removesuffix(' at')} at column {e.colno}"
                if e.msg.startswith("Invalid control character") and e.pos < len(text):
                    char = text[e.pos]
                    msg = f"{msg}: a raw {char!r} byte inside a string; write it escaped, as \\u{ord(char):04x}"
                raise ValueError(f"not valid JSON ({msg})") from e

        return str(file), [(i, f"{file}:{i}", lambda raw=raw: decode(raw)) for i, raw in lines]

    def _dataset_rows(self, name: str):
        if self._hf is None:
            import datasets

            local = Path(self.dataset).expanduser()
            if local.is_dir():
                # A local copy of the hub repo (README listing configs main/socratic) needs the config name;
                # a plain folder of data files has only the default config.
                config = "main" if "main" in datasets.get_dataset_config_names(str(local)) else None
                self._hf = datasets.load_dataset(str(local), config)
            else:
                self._hf = datasets.load_dataset(self.dataset, "main")
        if name not in self._hf:
            raise TaskDataError(f"dataset {self.dataset} has no {name!r} split (it has {list(self._hf)})")
        records = self._hf[name].to_list()
        where = f"dataset {self.dataset} split {name}"
        # Row numbers are 1-based like jsonl line numbers, so ids match the jsonl files of the same data.
        return where, [(i + 1, f"{where} row {i + 1}", lambda i=i: records[i]) for i in range(len(records))]
