import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from gan_cot.steps import (
    LABELS,
    SEPARATORS,
    Step,
    join_steps,
    resolve_separator,
    split_steps,
    step_end_positions,
    step_token_spans,
)

CORPUS = [
    "Natalia sold 48/2 = 24 clips in May.",
    "Natalia sold 48+24 = 72 clips altogether in April and May.",
    "Weng earns 12/60 = $0.2 per minute.",
    "Working 50 minutes, she earned 0.2 x 50 = $10.",
    "In the beginning, Betty has only 100 / 2 = $50.",
    "Betty's grandparents gave her 15 * 2 = $30.",
    "So the answer is 5.",
]
CHAIN = "\n".join(CORPUS[:4])
BLANK_CHAIN = "Natalia sold 48/2 = 24 clips in May.\nSo the answer is 5.\n\nWeng earns 12/60 = $0.2 per minute."


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """GPT-2 / Qwen style: byte-level BPE whose word tokens carry their leading space."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def wordpiece() -> PreTrainedTokenizerFast:
    """BERT style: WordPiece after splitting on whitespace and punctuation (spaces are not tokens)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainer=trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


TOKENIZERS = {"byte_level_bpe": byte_level_bpe, "wordpiece": wordpiece}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tokenizer(request):
    return TOKENIZERS[request.param]()


def test_labels_and_separators():
    assert LABELS == ("useful", "redundant", "wrong")
    assert resolve_separator("newline") == "\n"
    assert resolve_separator("blank_line") == "\n\n"
    assert resolve_separator(" | ") == " | "
    assert set(SEPARATORS) == {"newline", "blank_line"}


@pytest.mark.parametrize("sep", ["", None])
def test_empty_separator_names_allowed_values(sep):
    with pytest.raises(ValueError, match="separator.*blank_line.*newline"):
        resolve_separator(sep)
    with pytest.raises(ValueError, match="separator"):
        split_steps("a\nb", sep)


@pytest.mark.parametrize(
    "text, sep, expected",
    [
        (CHAIN, "newline", CORPUS[:4]),
        (CHAIN, "\n", CORPUS[:4]),
        (BLANK_CHAIN, "blank_line", [BLANK_CHAIN.split("\n\n")[0], CORPUS[2]]),
        ("x = 1 | y = 2 | so 3", " | ", ["x = 1", "y = 2", "so 3"]),
    ],
)
def test_round_trip(text, sep, expected):
    steps = split_steps(text, sep)
    assert [s.text for s in steps] == expected
    assert all(text[s.start : s.end] == s.text for s in steps)
    assert join_steps([s.text for s in steps], sep) == text
    assert join_steps(steps, sep) == text


def test_split_strips_and_drops_empty_pieces():
    text = "  first step \n\n\t\n   second step\n"
    steps = split_steps(text, "newline")
    assert [s.text for s in steps] == ["first step", "second step"]
    assert steps[0] == Step("first step", 2, 12)
    assert all(text[s.start : s.end] == s.text for s in steps)
    assert split_steps("", "\n") == []
    assert split_steps(" \n \n", "\n") == []
    # with blank-line steps a single newline stays inside the step, and extra newlines are stripped
    text = "a\nb\n\n\n\nc"
    assert [s.text for s in split_steps(text, "blank_line")] == ["a\nb", "c"]


def _check_spans(tok, text, steps, spans, ids, offsets):
    assert len(spans) == len(steps)
    previous_end = 0
    for step, (start, end) in zip(steps, spans):
        assert previous_end <= start < end, "spans must be ordered, disjoint and non-empty"
        previous_end = end
        # the tokens' characters are exactly the step (plus a leading space a byte-level token may carry)
        assert text[offsets[start][0] : offsets[end - 1][1]].lstrip() == step.text
        decoded = tok.decode(ids[start:end])
        if "wordpiece" in type(tok.backend_tokenizer.model).__name__.lower():
            # WordPiece decoding does not keep the original spacing around punctuation
            assert decoded.replace(" ", "") == step.text.replace(" ", "").replace("\n", "")
        else:
            assert decoded.strip() == step.text
    # every token carrying characters of a step lies in that step's span
    for k, step in enumerate(steps):
        inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < step.end and e > step.start]
        assert inside == list(range(*spans[k]))


@pytest.mark.parametrize(
    "text, sep", [(CHAIN, "newline"), (BLANK_CHAIN, "blank_line"), ("x = 1 | y = 2 | so 3", " | ")]
)
def test_token_spans(tokenizer, text, sep):
    steps = split_steps(text, sep)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = step_token_spans(tokenizer, text, steps)
    _check_spans(tokenizer, text, steps, spans, enc["input_ids"], enc["offset_mapping"])
    assert step_end_positions(spans) == [end - 1 for _, end in spans]
    assert step_end_positions(spans)[-1] == len(enc["input_ids"]) - 1


def test_token_spans_non_ascii_byte_level():
    tok = byte_level_bpe()
    text = "Le café coûte 3 € = 3 × 1 €.\nDonc 3 €."
    steps = split_steps(text)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = step_token_spans(tok, text, steps)
    _check_spans(tok, text, steps, spans, enc["input_ids"], enc["offset_mapping"])


def test_token_spans_with_given_offsets(tokenizer):
    """Steps of a completion located inside prompt + completion, with the caller's offset mapping."""
    prompt = "Question: how many clips?\n"
    full = prompt + CHAIN
    steps = [Step(s.text, s.start + len(prompt), s.end + len(prompt)) for s in split_steps(CHAIN)]
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    spans = step_token_spans(tokenizer, full, steps, offsets=enc["offset_mapping"])
    _check_spans(tokenizer, full, steps, spans, enc["input_ids"], enc["offset_mapping"])
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert spans[0][0] == prompt_tokens
    # array offsets, also as a batch of one (return_tensors="np"/"pt" shape)
    as_array = np.array(enc["offset_mapping"])
    assert step_token_spans(None, full, steps, offsets=as_array) == spans
    assert step_token_spans(None, full, steps, offsets=as_array[None]) == spans
    with pytest.raises(ValueError, match="batch of 2"):
        step_token_spans(None, full, steps, offsets=np.stack([as_array, as_array]))


def test_special_tokens_belong_to_no_step():
    tok = byte_level_bpe()
    steps = split_steps(CHAIN)
    enc = tok(CHAIN, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(0, 0), *enc["offset_mapping"], (0, 0)]  # e.g. BOS/EOS added around the text
    spans = step_token_spans(tok, CHAIN, steps, offsets=offsets)
    assert spans == [(s + 1, e + 1) for s, e in step_token_spans(tok, CHAIN, steps)]


def test_slow_tokenizer_is_rejected():
    from transformers import ByT5Tokenizer  # a slow (pure Python) tokenizer needing no files

    slow = ByT5Tokenizer()
    with pytest.raises(ValueError, match="fast tokenizer.*ByT5Tokenizer"):
        step_token_spans(slow, "a\nb", split_steps("a\nb"))


def test_missing_offsets_is_rejected():
    class NoOffsets:
        is_fast = True

        def __call__(self, text, **kwargs):
            return {"input_ids": [1, 2, 3]}

    with pytest.raises(ValueError, match="no offset mapping"):
        step_token_spans(NoOffsets(), "a\nb", split_steps("a\nb"))


def test_step_outside_offsets_is_rejected():
    tok = byte_level_bpe()
    text = "So the answer is 5."
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    with pytest.raises(ValueError, match="step 0 .*overlaps no token"):
        step_token_spans(tok, text, [Step("elsewhere", 100, 109)], offsets=enc["offset_mapping"])
