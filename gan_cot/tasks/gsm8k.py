"""GSM8K (grade-school math word problems) as a task.

Each line of GSM8K's jsonl files is ``{"question": ..., "answer": "step\\nstep\\n#### 72"}``. The
reference chain is the solution lines before the ``####`` line and the final answer is what follows
``####``. Solution lines carry calculator annotations like ``48/2 = <<48/2=24>>24``; each one is
checked with a safe arithmetic evaluator (``meta["calc_ok"]``) and removed from the steps unless
``keep_calculator=True``. A step whose annotation is wrong can be labelled ``wrong`` for the
discriminator (:func:`calculator_labels`).

Data comes from a folder holding ``train.jsonl`` and ``test.jsonl`` (or one .jsonl file used for every
split), or from a ``datasets`` dataset (hub id, config ``main``, or a local dataset folder).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import os
import re
from pathlib import Path

from gan_cot.steps import split_steps
from gan_cot.tasks.base import ANSWER_MARKER, Example, TaskBase, TaskDataError, normalize_number

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

    An ``id`` field (a string or an integer) is kept in ``meta["record_id"]``; the task refuses a split in
    which two records share one. Raises ValueError naming the problem; the caller adds where the record
    came from.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with 'question' and 'answer', got {type(record).__name__}")
    for key in ("question", "answer"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
        if not isinstance(record[key], str):
            raise ValueError(f"field {key!r} is not a string")
    record_id = record.get("id")
    if "id" in record and (isinstance(record_id, bool) or not isinstance(record_id, (str, int)) or record_id == ""):
        raise ValueError(f"field 'id' must be a non-empty string or an integer, got {record_id!r}")
    question = record["question"].strip()
    if not question:
        raise ValueError("empty question")
    body, marker, final = record["answer"].rpartition(ANSWER_MARKER)
    final = final.strip()
    if not marker or not final:
        raise ValueError(f"no final answer after {ANSWER_MARKER!r}")
    raw_steps = [s.text for s in split_steps(body, "\n")]
    if not raw_steps:
        raise ValueError(f"no solution steps before {ANSWER_MARKER!r}")
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
            **({"record_id": record_id} if record_id is not None else {}),
        },
    )


class Gsm8kTask(TaskBase):
    """GSM8K with the project's task protocol.

    ``path`` is a folder holding ``train.jsonl`` and ``test.jsonl``, or one .jsonl file that every
    split reads; by default the first that exists of ``$GAN_COT_GSM8K`` and ``<repo>/../shared/data/gsm8k``.
    ``dataset`` is instead a ``datasets`` hub id (loaded with config ``main``) or a local dataset folder.

    Splits: ``train`` is the train data minus its last ``validation_size`` lines, ``validation`` those
    lines, ``test`` the test data. Bad lines raise :class:`TaskDataError` naming file and line, or with
    ``skip_bad=True`` are skipped, counted in ``self.skipped[split]`` and reported in one warning.
    """

    name = "gsm8k"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        dataset: str | None = None,
        skip_bad: bool = False,
        validation_size: int = 500,
        keep_calculator: bool = False,
    ):
        if path is not None and dataset is not None:
            raise ValueError("pass either path= (jsonl files) or dataset= (a datasets id or folder), not both")
        if validation_size < 0:
            raise ValueError(f"validation_size must be >= 0, got {validation_size}")
        self.skip_bad = skip_bad
        self.validation_size = validation_size
        self.keep_calculator = keep_calculator
        self.dataset = dataset
        self.path = None if dataset is not None else self._resolve_path(path)
        self.skipped: dict[str, int] = {}
        self._cache: dict[str, list[Example]] = {}
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

    # --- loading -----------------------------------------------------------------------------------

    def _load(self, split: str) -> list[Example]:
        if self.dataset is not None:
            rows, where = self._dataset_rows(split)
        else:
            rows, where = self._jsonl_rows(split)
        examples, bad = [], []
        seen_ids: dict = {}  # record id -> where it first appeared
        for lineno, loc, parse in rows:
            try:
                ex = parse_record(parse(), id=f"gsm8k-{split}-{lineno}", keep_calculator=self.keep_calculator)
                record_id = ex.meta.get("record_id")
                if record_id is not None:
                    if record_id in seen_ids:
                        raise ValueError(f"duplicate id {record_id!r} (first used at {seen_ids[record_id]})")
                    seen_ids[record_id] = loc
            except ValueError as e:  # also json.JSONDecodeError and UnicodeDecodeError
                if not self.skip_bad:
                    raise TaskDataError(f"{loc}: {e}; fix the line or pass skip_bad=True (--skip-bad)") from e
                bad.append(f"{loc} ({e})")
                continue
            examples.append(ex)
        self.skipped[split] = len(bad)
        if bad:
            shown = "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
            log.warning("gsm8k %s: skipped %d bad line(s) of %s: %s", split, len(bad), where, shown)
        return examples

    def _split_range(self, n: int, split: str, source: str) -> range:
        """Which of the ``n`` records of the train (or single) source belong to ``split``."""
        if split == "test":
            return range(n)
        cut = n - self.validation_size
        if cut <= 0 and split == "train":
            raise TaskDataError(
                f"{source} has {n} records, not more than validation_size={self.validation_size}, "
                "so the train split would be empty; pass a smaller validation_size"
            )
        return range(max(cut, 0), n) if split == "validation" else range(cut)

    def _jsonl_rows(self, split: str):
        if self.path.is_dir():
            file = self.path / ("test.jsonl" if split == "test" else "train.jsonl")
            if not file.is_file():
                raise TaskDataError(
                    f"{file} not found; the GSM8K folder {self.path} must hold train.jsonl and test.jsonl"
                )
        else:
            file = self.path
        # Blank lines are not records; line numbers stay those of the file.
        lines = [(i, raw) for i, raw in enumerate(file.read_bytes().split(b"\n"), 1) if raw.strip()]
        chosen = [lines[i] for i in self._split_range(len(lines), split, str(file))]

        def decode(raw: bytes):
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"line is {len(raw)} bytes, over the limit of {MAX_LINE_BYTES} bytes for one record")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from e
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from e

        rows = [(i, f"{file}:{i}", lambda raw=raw: decode(raw)) for i, raw in chosen]
        return rows, str(file)

    def _dataset_rows(self, split: str):
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
        source_split = "test" if split == "test" else "train"
        if source_split not in self._hf:
            raise TaskDataError(f"dataset {self.dataset} has no {source_split!r} split (it has {list(self._hf)})")
        records = self._hf[source_split].to_list()
        where = f"dataset {self.dataset} split {source_split}"
        # Row numbers are 1-based like jsonl line numbers, so ids match the jsonl files of the same data.
        rows = [
            (i + 1, f"{where} row {i + 1}", lambda i=i: records[i])
            for i in self._split_range(len(records), split, where)
        ]
        return rows, where
