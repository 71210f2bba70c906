"""Loading causal LMs by Hub id or path, and building the tiny default policy.

Every model goes through :func:`load_model` / :func:`load_tokenizer` (``from_pretrained``), and every
prompt through :func:`render_prompt` (the tokenizer's chat template). The tiny default is an ordinary
Hugging Face checkpoint: a byte-level BPE tokenizer trained with the ``tokenizers`` library on ledger
text, a small Llama config, and a chat template, saved with ``save_pretrained``. No other code
special-cases it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gan_cot import shipped
from gan_cot.usage import check_model_path, one_line

EOS = "<|endoftext|>"
PAD = "<|pad|>"
# Question, then the answer's chain. Real reasoning models bring their own template.
TINY_CHAT_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{ 'Question: ' + message['content'] + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'Answer:\\n' }}{%- endif %}"
)


def resolve_base(name_or_path: str) -> str:
    """A model as a config or an adapter records it: a folder relative to the working directory, else one of the
    shipped models (``models/ledger-verbose-base``), else a Hub id."""
    return shipped.resolve(name_or_path)


# DeepSeek-R1-style: the generation prompt opens the thinking; the model closes it with </think> and answers.
R1_CHAT_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'Assistant: <think>\\n' }}{%- endif %}"
)


def _adapter_base(name_or_path: str) -> str | None:
    """The base model of a peft adapter folder, or None when ``name_or_path`` is not one."""
    cfg = Path(name_or_path) / "adapter_config.json"
    if not cfg.exists():
        return None
    import json

    return resolve_base(json.loads(cfg.read_text())["base_model_name_or_path"])


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    name_or_path = resolve_base(name_or_path)
    check_model_path(name_or_path)
    source = name_or_path
    if _adapter_base(name_or_path) and not (Path(name_or_path) / "tokenizer_config.json").exists():
        source = _adapter_base(name_or_path)
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str, dtype: torch.dtype | str = "auto", trust_remote_code: bool = False, **kwargs):
    """A causal LM by Hub id or local path; safetensors weights only.

    A peft adapter folder (``adapter_config.json``) loads its base model with the adapter merged in. Weights that
    do not fit their config (a tensor of another shape) raise ValueError naming the folder.
    """
    name_or_path = resolve_base(name_or_path)
    check_model_path(name_or_path)
    if _adapter_base(name_or_path):
        from peft import PeftModel

        base = load_model(_adapter_base(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
        return PeftModel.from_pretrained(base, name_or_path).merge_and_unload()
    try:
        return AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
        )
    except RuntimeError as e:  # transformers' size-mismatch report, and the like: the weights are not this model's
        raise ValueError(
            f"{name_or_path}: the weights cannot be loaded ({one_line(e)}); save the model again (save_pretrained)"
        ) from e


def resolve_dtype(name: str) -> torch.dtype:
    """A dtype name as a torch dtype; ``auto`` is bfloat16 on GPUs (where DeepSpeed runs it in bf16), else float32."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def render_prompt(tokenizer, question: str) -> str:
    """The text a policy sees before its chain: the tokenizer's chat template with a generation prompt, the question
    followed by the policy's instruction when one is set (:func:`set_instruction`)."""
    instruction = getattr(tokenizer, INSTRUCTION_ATTR, None)
    if instruction:
        question = f"{question}\n\n{instruction}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return question + "\n"


INSTRUCTION_ATTR = "gan_cot_instruction"


def is_chat_model(tokenizer) -> bool:
    """Whether a tokenizer's chat template is a real chat model's: any template but the tiny policies' own (those
    are trained on the bare question and have no instruction to follow)."""
    template = getattr(tokenizer, "chat_template", None)
    return bool(template) and template.strip() not in (TINY_CHAT_TEMPLATE, R1_CHAT_TEMPLATE)


def resolve_instruction(setting: str | None, tokenizer, fmt) -> str | None:
    """The prompt instruction a run's ``instruction`` key means: ``auto`` is the chain format's own instruction for a
    chat model (:func:`is_chat_model`) and none for the tiny policies; ``none`` (or null, or empty) is none; any other
    text is itself."""
    if setting is None or setting.strip().lower() in ("", "none"):
        return None
    if setting == "auto":
        return fmt.instruction if is_chat_model(tokenizer) and fmt.instruction else None
    return setting


def set_instruction(tokenizer, instruction: str | None) -> str | None:
    """Make :func:`render_prompt` append ``instruction`` to every question rendered with this (the policy's)
    tokenizer. The discriminator reads the bare question: the instruction is addressed to the policy. Returns it."""
    setattr(tokenizer, INSTRUCTION_ATTR, instruction or None)
    return instruction or None


def tiny_corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """Ledger text (questions, chains, prompt words and every count) to train the tiny tokenizer on."""
    from gan_cot.tasks.ledger import LedgerTask

    task = LedgerTask(seed=seed)
    texts = []
    for ex in task.examples("train", n):
        texts.append("Question: " + ex.question)
        texts.append("Answer:\n" + task.reference(ex))
    # every count and slip the task can write, so each becomes a single token
    texts += [" ".join(str(i) for i in range(0, 128))] * 50
    return texts


def build_tiny_tokenizer(vocab_size: int = 640, seed: int = 0, style: str = "ledger") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ledger text: any text encodes; ledger words are one token.

    ``style="r1"`` makes it look like a DeepSeek-R1-style reasoning model's: the pad token is the end-of-sequence
    token, ``<think>`` and ``</think>`` are added (not special: decoding keeps them), and the chat template opens
    the thinking after the question (``... Assistant: <think>\n``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(seed=seed), trainer=trainer)
    r1 = style == "r1"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS if r1 else PAD, bos_token=None, padding_side="left"
    )
    fast.chat_template = R1_CHAT_TEMPLATE if r1 else TINY_CHAT_TEMPLATE
    if r1:
        from tokenizers import AddedToken

        fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    return fast


def tiny_config(tokenizer, hidden_size: int = 128, layers: int = 4, heads: int = 4, max_len: int = 512) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def build_tiny_model(tokenizer=None, seed: int = 0, **config_kwargs):
    """A freshly initialised tiny Llama and its tokenizer (untrained; ``prepare_base.py`` trains it)."""
    tokenizer = tokenizer or build_tiny_tokenizer(seed=seed)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(tokenizer, **config_kwargs))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_pretrained(model, tokenizer, path: str | Path) -> Path:
    """Save model and tokenizer side by side, through a temporary folder renamed into place."""
    from gan_cot.checkpoint import atomic_dir

    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(path)
