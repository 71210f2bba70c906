"""Process reward models in their own layouts, loaded by gan-cot's code: each tiny checkpoint scores a hand-written
chain exactly where its layout says (checked against the model run by hand), two-way scorers get their redundant
from a second source, long chains are windowed, and shipped code never runs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import prm_checkpoints
import pytest
import torch
from safetensors.torch import load_file

from gan_cot.discriminator.card import DiscriminatorError
from gan_cot.discriminator.checkpoint import CheckpointError
from gan_cot.discriminator.model import Discriminator
from gan_cot.discriminator.train import discriminator_loss

QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples. How many apples does he have?"
STEPS = ["3 bags of 4 apples are 3 * 4 = 12 apples.", "He had 12 apples.", "He has 12 + 12 = 24 apples."]
TWO_WAY = {"LABEL_0": "wrong", "LABEL_1": "useful"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("prms")
    return {
        "trl": prm_checkpoints.trl_prm(root / "trl", tiny_tokenizer),
        "step_tag": prm_checkpoints.step_tag_lm(root / "shepherd", tiny_tokenizer),
        "qwen": prm_checkpoints.qwen_prm(root / "qwen", tiny_tokenizer, marker=root / "shipped-code-ran"),
        "marker": root / "shipped-code-ran",
    }


def _softmax_at(logits: torch.Tensor, positions: list[int]) -> torch.Tensor:
    return logits[positions].float().softmax(-1)


def test_trl_prm_scores_each_steps_separator(ckpts):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    disc = Discriminator.from_pretrained(str(ckpts["trl"]), label_map=TWO_WAY)
    assert disc.card.layout == "trl_prm" and disc.two_way and disc.names == ["LABEL_0", "LABEL_1"]
    probs = disc.score([QUESTION], [STEPS])[0]
    # by hand, as TRL's PRMTrainer tokenizes: question, then each step followed by the separator, label on its end
    tok, model = (
        AutoTokenizer.from_pretrained(ckpts["trl"]),
        AutoModelForTokenClassification.from_pretrained(ckpts["trl"]),
    )
    ids, ends = tok(QUESTION, add_special_tokens=False)["input_ids"], []
    for s in STEPS:
        ids += tok(s, add_special_tokens=False)["input_ids"] + tok("\n", add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    with torch.no_grad():
        expected = _softmax_at(model(torch.tensor([ids])).logits[0], ends)
    assert torch.allclose(probs[:, 0], expected[:, 1], atol=1e-5)  # LABEL_1: a correct step
    assert torch.allclose(probs[:, 2], expected[:, 0], atol=1e-5)
    assert torch.equal(probs[:, 1], torch.zeros(3))  # no redundancy source: two-way


def test_trl_prm_label_names_and_the_missing_map(ckpts, tmp_path, tiny_tokenizer):
    with pytest.raises(
        DiscriminatorError, match=r"no label map; the model's labels are \['LABEL_0', 'LABEL_1'\]"
    ) as e:
        Discriminator.check(str(ckpts["trl"]))
    assert "--label-map LABEL_0=wrong,LABEL_1=useful" in str(e.value) and "discriminator.label_map" in str(e.value)
    named = prm_checkpoints.trl_prm(tmp_path / "named", tiny_tokenizer, id2label={0: "bad", 1: "good"})
    disc = Discriminator.from_pretrained(str(named), label_map={"bad": "wrong", "good": "useful"})
    assert disc.index == [1, 0]  # useful is class 1, wrong class 0
    with pytest.raises(
        DiscriminatorError, match=r"names \['LABEL_0', 'LABEL_1'\] that are not model labels.*\['bad', 'good'\]"
    ):
        Discriminator.check(str(named), label_map=TWO_WAY)


def test_step_tag_lm_scores_good_and_bad_tokens_at_each_tag(ckpts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shepherd = {"layout": "step_tag", "step_tag": {"tag": "ки", "good": "+", "bad": "-"}}
    with pytest.raises(DiscriminatorError, match="discriminator.layout=step_tag"):
        Discriminator.check(str(ckpts["step_tag"]))  # a causal LM says nothing about being a step scorer
    disc = Discriminator.from_pretrained(str(ckpts["step_tag"]), **shepherd)
    assert disc.names == ["+", "-"] and disc.two_way
    probs = disc.score([QUESTION], [STEPS])[0]
    tok, model = (
        AutoTokenizer.from_pretrained(ckpts["step_tag"]),
        AutoModelForCausalLM.from_pretrained(ckpts["step_tag"]),
    )
    text = QUESTION + " " + "\n".join(f"Step {k}: {s} ки" for k, s in enumerate(STEPS, 1))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    tag = tok("ки", add_special_tokens=False)["input_ids"][-1]
    good, bad = tok("+ -", add_special_tokens=False)["input_ids"]
    tags = [i for i, t in enumerate(ids) if t == tag]
    assert len(tags) == 3
    with torch.no_grad():
        expected = _softmax_at(model(torch.tensor([ids])).logits[0][:, [good, bad]], tags)
    assert torch.allclose(probs[:, 0], expected[:, 0], atol=1e-5)
    assert torch.allclose(probs[:, 2], expected[:, 1], atol=1e-5)


def test_qwen_prm_head_is_built_natively_and_shipped_code_never_runs(ckpts):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    disc = Discriminator.from_pretrained(str(ckpts["qwen"]))  # recognised from config.json's architectures
    assert disc.card.layout == "qwen_prm" and disc.card.label_map == TWO_WAY
    probs = disc.score([QUESTION], [STEPS])[0]
    assert not ckpts["marker"].exists()
    # by hand: the published recipe (chat template, <extra_0> after each step) on Qwen2Model + the two-layer head
    folder = ckpts["qwen"]
    tok = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "<extra_0>".join(STEPS) + "<extra_0>"}]  # fmt: skip
    ids = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    marks = [i for i, t in enumerate(ids) if t == tok.convert_tokens_to_ids("<extra_0>")]
    state = {**load_file(str(folder / "model-00001-of-00002.safetensors")),
             **load_file(str(folder / "model-00002-of-00002.safetensors"))}  # fmt: skip
    raw = json.loads((folder / "config.json").read_text())
    backbone = Qwen2Model(Qwen2Config(**{k: v for k, v in raw.items() if k not in ("architectures", "auto_map")}))
    backbone.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    with torch.no_grad():
        h = backbone(torch.tensor([ids])).last_hidden_state[0, marks]
        h = torch.relu(h @ state["score.0.weight"].T + state["score.0.bias"])
        expected = (h @ state["score.2.weight"].T + state["score.2.bias"]).softmax(-1)
    assert torch.allclose(probs[:, 0], expected[:, 1], atol=1e-5)  # class 1: a correct step
    saved = disc.save_pretrained(folder.parent / "qwen-saved")
    assert "auto_map" not in json.loads((saved / "config.json").read_text())
    again = Discriminator.from_pretrained(str(saved))
    assert torch.allclose(again.score([QUESTION], [STEPS])[0], probs, atol=1e-6)


def test_auto_map_of_an_unknown_architecture_is_refused(ckpts, tmp_path):
    folder = Path(shutil.copytree(ckpts["trl"], tmp_path / "custom"))
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["CustomPRMForTokenClassification"], auto_map={"AutoModel": "modeling_x.CustomPRM"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="auto_map.*refuses to run code"):
        Discriminator.check(str(folder), label_map=TWO_WAY)


@pytest.mark.parametrize("kind", ["trl", "step_tag", "qwen"])
def test_every_layout_trains_in_adversarial_mode(ckpts, kind):
    from gan_cot.discriminator.data import StepRecord

    settings = {"trl": {"label_map": TWO_WAY}, "qwen": {},
                "step_tag": {"layout": "step_tag", "step_tag": {"tag": "ки", "good": "+", "bad": "-"}}}[kind]  # fmt: skip
    disc = Discriminator.from_pretrained(str(ckpts[kind]), **settings)
    record = StepRecord(QUESTION, STEPS, ["useful", "redundant", "wrong"])
    opt = torch.optim.Adam(disc.model.parameters(), lr=1e-3)
    before, _ = discriminator_loss(disc, [record])
    for _ in range(3):
        loss, _ = discriminator_loss(disc, [record])
        loss.backward()
        opt.step()
        opt.zero_grad()
    after, _ = discriminator_loss(disc, [record])
    assert after.item() < before.item()
    assert disc.target_ids(record.labels) == [disc.index[0], disc.index[0], disc.index[1]]  # redundant is correct


def test_redundancy_head_splits_the_correct_mass(ckpts, tiny_disc_dir):
    prm = Discriminator.from_pretrained(str(ckpts["trl"]), label_map=TWO_WAY)
    both = Discriminator.from_pretrained(
        str(ckpts["trl"]), label_map=TWO_WAY, redundancy="head", redundancy_head=str(tiny_disc_dir)
    )
    head = Discriminator.from_pretrained(str(tiny_disc_dir)).score([QUESTION], [STEPS])[0]
    alone, mixed = prm.score([QUESTION], [STEPS])[0], both.score([QUESTION], [STEPS])[0]
    r = head[:, 1] / (head[:, 0] + head[:, 1])
    assert torch.allclose(mixed[:, 1], alone[:, 0] * r, atol=1e-6) and torch.allclose(mixed[:, 2], alone[:, 2])
    assert torch.allclose(mixed.sum(-1), torch.ones(3), atol=1e-6)
    with pytest.raises(DiscriminatorError, match="predicts redundant itself"):
        Discriminator.check(str(tiny_disc_dir), redundancy="probe")


class AnswerKnower(torch.nn.Module):
    """A stand-in policy: sure of the answer once the context holds ``key``, unsure before."""

    def __init__(self, vocab: int, key: int, answer: list[int]):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.key, self.answer = vocab, key, answer

    def forward(self, input_ids, attention_mask=None, logits_to_keep=1):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        seen = (input_ids == self.key).cumsum(1) > 0  # [batch, seq]
        logits[..., self.answer] += 8.0 * seen.unsqueeze(-1)
        return type("Out", (), {"logits": logits[:, -logits_to_keep:]})


def test_answer_probe_calls_redundant_the_steps_that_do_not_raise_the_answer(ckpts, tiny_tokenizer):
    prm = Discriminator.from_pretrained(str(ckpts["trl"]), label_map=TWO_WAY, redundancy="probe")
    with pytest.raises(DiscriminatorError, match="needs the policy.*bind_policy"):
        prm.score([QUESTION], [STEPS])
    key = tiny_tokenizer(" 24", add_special_tokens=False)["input_ids"][-1]
    answer = tiny_tokenizer(" 24", add_special_tokens=False)["input_ids"]
    policy = AnswerKnower(len(tiny_tokenizer), key, answer)
    prm.bind_policy(policy, tiny_tokenizer, {QUESTION: "24"})
    probs = prm.score([QUESTION], [STEPS])[0]
    # only the last step (which writes 24) raises the answer's probability; the other two are redundant
    assert probs[:2, 1].tolist() == pytest.approx(probs[:2, 0:2].sum(-1).tolist()) and probs[2, 1] == 0


def test_long_chains_are_windowed_not_indexed_past_the_positions(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer, tk.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk.train_from_iterator([QUESTION, *STEPS] * 20, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")
    labels = {0: "useful", 1: "redundant", 2: "wrong"}
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, num_labels=3, id2label=labels,
                        label2id={v: k for k, v in labels.items()})  # fmt: skip
    model = BertForTokenClassification(config)
    from gan_cot.discriminator.card import DiscriminatorCard

    disc = Discriminator(model, tok, DiscriminatorCard(label_map={v: v for v in labels.values()}))
    chain = STEPS * 5 + ["He ends with 24 apples."]  # about 200 tokens against 40 positions
    enc = disc.encode(QUESTION, chain)
    assert len(enc.ids) > 4 * config.max_position_embeddings
    with pytest.raises((IndexError, RuntimeError)):
        model(torch.tensor([enc.ids]))  # what scoring did before windows
    probs = disc.score([QUESTION], [chain])[0]
    assert probs.shape == (len(chain), 3) and torch.allclose(probs.sum(-1), torch.ones(len(chain)), atol=1e-5)
    short = disc.score([QUESTION[:20]], [STEPS[:1]])[0]  # a chain that fits is one window, as before
    with torch.no_grad():
        e = disc.encode(QUESTION[:20], STEPS[:1])
        assert torch.allclose(short, model(torch.tensor([e.ids])).logits[0, e.ends].softmax(-1), atol=1e-6)


def test_device_and_dtype(tiny_disc_dir):
    disc = Discriminator.from_pretrained(str(tiny_disc_dir), device="cpu", dtype="bfloat16")
    assert next(disc.model.parameters()).dtype == torch.bfloat16 and disc.device.type == "cpu"
    probs = disc.score([QUESTION], [STEPS])[0]
    assert probs.dtype == torch.float32 and probs.shape == (3, 3)
    from gan_cot.trainer_config import DiscriminatorRunConfig

    auto = Discriminator.from_config(DiscriminatorRunConfig(name=str(tiny_disc_dir)), device=torch.device("cpu"))
    assert next(auto.model.parameters()).dtype == torch.float32  # auto: float32 on a CPU


def _hub_snapshot(cache: Path, repo_id: str, revision: str, build) -> Path:
    """The layout huggingface_hub's snapshot_download leaves in its cache (refs/<revision> -> snapshots/<commit>)."""
    commit = revision if len(revision) == 40 else "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "hub" / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return build(repo / "snapshots" / commit)


def test_registry_names_fetch_from_a_hub_snapshot(tmp_path, tiny_tokenizer):
    from gan_cot.discriminator.registry import load_registry

    entries = load_registry()
    cache = tmp_path / "cache"
    for name, build in (
        ("math-shepherd", lambda f: prm_checkpoints.step_tag_lm(f, tiny_tokenizer)),
        ("qwen2.5-math-prm-7b", lambda f: prm_checkpoints.qwen_prm(f, tiny_tokenizer, marker=tmp_path / "ran")),
    ):
        entry = entries[name]
        snap = _hub_snapshot(cache, entry.repo_id, entry.revision, build)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        r = subprocess.run([sys.executable, "scripts/download_discriminator.py", name, "--offline", "--cache-dir",
                            str(cache), "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["path"] == str(snap)
        disc = Discriminator.from_pretrained(name, cache_dir=cache, offline=True)
        assert disc.card.layout == entry.scoring["layout"] and disc.two_way
        assert disc.score([QUESTION], [STEPS])[0].shape == (3, 3)
    assert not (tmp_path / "ran").exists()


SHEPHERD_FLAGS = ["discriminator.layout=step_tag", 'discriminator.step_tag={tag: ки, good: "+", bad: "-"}']


@pytest.mark.slow
@pytest.mark.parametrize("kind, extra", [("trl", ["--label-map", "LABEL_0=wrong,LABEL_1=useful"]),
                                         ("step_tag", SHEPHERD_FLAGS), ("qwen", [])])  # fmt: skip
def test_train_adv_runs_two_rounds_on_each_prm_layout(kind, extra, ckpts, tmp_path, tiny_model_dir, capsys):
    import mlflow
    from commands import command as load_script

    argv = ["--config", str(ROOT / "configs" / "tiny.yaml"), f"model={tiny_model_dir}", f"output_dir={tmp_path / 'out'}",
            f"mlflow_dir={tmp_path / 'mlruns'}", f"deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero0.json'}",
            "--discriminator", str(ckpts[kind]), *extra]  # fmt: skip
    assert load_script("train_adv").main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    assert sorted(m.step for m in client.get_metric_history(result["run_id"], "discriminator/frac_wrong")) == [0, 1]
    card = json.loads((tmp_path / "out" / "discriminator" / "discriminator_card.json").read_text())
    assert card["layout"] == {"trl": "trl_prm", "step_tag": "step_tag", "qwen": "qwen_prm"}[kind]
    assert not ckpts["marker"].exists()
