"""The alpha gate: a per-row scale on the LoRA delta, in forward, generate and training, saved beside the adapter."""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from gan_cot.gate import (
    GATE_CONFIG,
    GATE_WEIGHTS,
    AlphaGate,
    GatedPolicy,
    LearnedGate,
    attach_gate,
    gated,
    load_gate,
    prompt_features,
    save_gate,
)
from gan_cot.models import render_prompt

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTIONS = ["Ann has 3 pens. Bob gives her 2.", "Cy has 7 cups.", "Dee has 4 hats and loses 1 of them."]


@pytest.fixture(scope="module")
def policy(tiny_tokenizer):
    """A tiny Llama with a LoRA whose B is random (``init_lora_weights=False``): the delta is not zero."""
    from gan_cot.models import build_tiny_model

    base, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2, seed=3)
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, init_lora_weights=False)
    model = get_peft_model(base, cfg)
    model.eval()
    return model, tok


def encode(tok, questions, side="left"):
    prompts = [render_prompt(tok, q) for q in questions]
    return tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side=side)


def logits(model, enc, alpha=None):
    with torch.no_grad(), gated(model, alpha):
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def test_gate_picks_one_of_its_choices_and_starts_at_the_highest(policy):
    model, tok = policy
    gate = AlphaGate(32, choices=(0.0, 0.5, 1.5), pooling="last")
    feats = prompt_features(model, **encode(tok, QUESTIONS), pooling="last")
    assert feats.shape == (3, 32)
    alpha = gate(feats)
    assert alpha.shape == (3,) and alpha.tolist() == [1.5, 1.5, 1.5]  # even odds: the highest alpha
    draws = gate.sample(feats.repeat(300, 1))
    assert set(draws.tolist()) == {0.0, 0.5, 1.5}  # every choice drawn, about a third each
    assert all(abs((draws == a).float().mean().item() - 1 / 3) < 0.08 for a in (0.0, 0.5, 1.5))
    lp = gate.log_prob(feats, torch.tensor([0.0, 0.5, 1.5]))
    assert torch.allclose(lp, torch.log(torch.full((3,), 1 / 3)))
    torch.manual_seed(1)
    for p in gate.parameters():
        torch.nn.init.normal_(p, std=5.0)
    assert set(gate(feats).tolist()) <= {0.0, 0.5, 1.5}
    for bad in ((1.0, 0.5), (0.5,), (-1.0, 1.0)):
        with pytest.raises(ValueError, match="choices"):
            AlphaGate(32, choices=bad)


def test_features_do_not_depend_on_padding_side(policy):
    model, tok = policy
    for pooling in ("mean", "last"):
        left = prompt_features(model, **encode(tok, QUESTIONS, "left"), pooling=pooling)
        right = prompt_features(model, **encode(tok, QUESTIONS, "right"), pooling=pooling)
        assert torch.allclose(left, right, atol=1e-5)


def test_alpha_zero_is_the_base_and_alpha_one_the_plain_lora(policy):
    model, tok = policy
    enc = encode(tok, QUESTIONS)
    with torch.no_grad(), model.disable_adapter():
        base = model(**enc).logits
    plain = logits(model, enc)
    assert not torch.allclose(base, plain, atol=1e-3)  # the delta matters
    assert torch.equal(logits(model, enc, 0.0), base)
    assert torch.equal(logits(model, enc, torch.zeros(3)), base)
    assert torch.equal(logits(model, enc, 1.0), plain)
    assert torch.equal(logits(model, enc, torch.ones(3)), plain)
    # a single-row alpha broadcasts over the batch
    assert torch.equal(logits(model, enc, torch.tensor([0.5])), logits(model, enc, 0.5))


def test_one_rows_alpha_changes_only_that_row(policy):
    model, tok = policy
    enc = encode(tok, QUESTIONS)
    a = logits(model, enc, torch.tensor([1.0, 1.0, 1.0]))
    b = logits(model, enc, torch.tensor([1.0, 1.7, 1.0]))
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[2], b[2], atol=1e-6)
    assert not torch.allclose(a[1], b[1], atol=1e-3)
    # and the row's logits are those of the whole batch at that alpha
    assert torch.allclose(b[1], logits(model, enc, 1.7)[1], atol=1e-6)


def test_gated_refuses_wrong_rows_nesting_and_merged_adapters(policy, tiny_tokenizer):
    from gan_cot.models import build_tiny_model

    model, tok = policy
    enc = encode(tok, QUESTIONS)
    with pytest.raises(ValueError, match="not a multiple"):
        logits(model, enc, torch.ones(2))
    with gated(model, 1.0), pytest.raises(RuntimeError, match="nest"), gated(model, 0.5):
        pass
    assert torch.equal(logits(model, enc, 1.0), logits(model, enc))  # hooks are gone after the errors
    with pytest.raises(ValueError, match="no active LoRA"), gated(torch.nn.Linear(2, 2), 1.0):
        pass
    base, _ = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2, seed=4)
    merged = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    merged.merge_adapter()
    with pytest.raises(ValueError, match="merged"), gated(merged, 0.5):
        pass


def test_gate_learns_from_log_prob_and_survives_save_and_load(policy, tmp_path):
    model, tok = policy
    enc = encode(tok, QUESTIONS)
    gate = AlphaGate(32, choices=(0.0, 1.0), pooling="mean", layer_sizes=(16,))
    feats = GatedPolicy(model, gate).features(enc["input_ids"], enc["attention_mask"])
    opt = torch.optim.SGD(gate.parameters(), lr=0.5)
    for step in range(3):  # the low alpha is rewarded for every question
        opt.zero_grad()
        (-gate.log_prob(feats, torch.zeros(3)).mean()).backward()
        grads = {n: p.grad for n, p in gate.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        assert grads["net.3.weight"].abs().sum() > 0 and grads["net.3.bias"].abs().sum() > 0
        if step == 1:  # the last layer starts at zero, so the first layer learns from the second step on
            assert grads["net.1.weight"].abs().sum() > 0
        opt.step()
    assert gate(feats).tolist() == [0.0, 0.0, 0.0]

    model.save_pretrained(tmp_path / "adapter")
    save_gate(gate, tmp_path / "adapter")
    assert (tmp_path / "adapter" / GATE_WEIGHTS).exists()
    cfg = json.loads((tmp_path / "adapter" / GATE_CONFIG).read_text())
    assert cfg["layer_sizes"] == [16] and cfg["choices"] == [0.0, 1.0]
    assert not list((tmp_path / "adapter").glob("*.bin")) and not list((tmp_path / "adapter").glob("*.pt"))
    again = load_gate(tmp_path / "adapter")
    assert again is not None and again.pooling == "mean" and again.choices == [0.0, 1.0]
    with torch.no_grad():
        assert torch.equal(again.logits(feats), gate.logits(feats))
    assert load_gate(tmp_path) is None
    # a plain peft loader reads the adapter folder as it is
    from gan_cot.models import build_tiny_model

    fresh, _ = build_tiny_model(tok, hidden_size=32, layers=2, heads=2, seed=3)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    assert torch.equal(logits(reloaded, enc, 0.7), logits(model, enc, 0.7))


def test_attached_gate_is_a_parameter_of_the_model_but_not_of_the_adapter(tiny_tokenizer, tmp_path):
    from gan_cot.models import build_tiny_model

    base, _ = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2, seed=4)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    gate = attach_gate(model, AlphaGate(32))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("alpha_gate.") for n in names)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    assert not any("alpha_gate" in k for k in load_file(str(tmp_path / "adapter_model.safetensors")))
    assert model.alpha_gate is gate


def gen(model, tok, questions, alpha, **kw):
    enc = encode(tok, questions)
    out = GatedPolicy(model).generate(
        enc["input_ids"], enc["attention_mask"], alpha=alpha, max_new_tokens=8, pad_token_id=tok.pad_token_id,
        eos_token_id=None, **kw,
    )  # fmt: skip
    return out[:, enc["input_ids"].shape[1] :]


def test_batched_generate_matches_each_row_alone(policy):
    model, tok = policy
    qs = QUESTIONS[:2]
    alphas = torch.tensor([0.3, 1.8])
    batched = gen(model, tok, qs, alphas, do_sample=False)
    for i, q in enumerate(qs):
        alone = gen(model, tok, [q], alphas[i : i + 1], do_sample=False)
        assert torch.equal(batched[i], alone[0]), i
    # different alphas lead to different chains here, so the comparison above has teeth
    assert not torch.equal(
        gen(model, tok, qs[:1], 0.3, do_sample=False), gen(model, tok, qs[:1], 1.8, do_sample=False)
    )

    # num_return_sequences repeats rows: alpha per prompt is repeated with them (top_k=1: sampling is greedy)
    expanded = gen(model, tok, qs, alphas, do_sample=True, top_k=1, num_return_sequences=2)
    assert expanded.shape[0] == 4
    for i in range(2):
        assert torch.equal(expanded[2 * i], batched[i]) and torch.equal(expanded[2 * i + 1], batched[i])
    # or one alpha per returned sequence
    per_seq = gen(model, tok, qs, torch.tensor([0.3, 1.8, 1.8, 0.3]), do_sample=True, top_k=1, num_return_sequences=2)
    assert torch.equal(per_seq[0], batched[0]) and torch.equal(per_seq[2], batched[1])
    assert torch.equal(per_seq[1], gen(model, tok, qs[:1], 1.8, do_sample=False)[0])


def test_fixed_alpha_overrides_the_gate(policy):
    model, tok = policy
    enc = encode(tok, QUESTIONS)
    gp = GatedPolicy(model, AlphaGate(32), alpha=0.0)
    assert torch.equal(gp.alpha(enc["input_ids"], enc["attention_mask"]), torch.zeros(3))
    with torch.no_grad(), model.disable_adapter():
        base = model(**enc).logits
    with torch.no_grad():
        assert torch.equal(gp(enc["input_ids"], enc["attention_mask"]).logits, base)
    assert torch.equal(GatedPolicy(model).alpha(enc["input_ids"]), torch.ones(3))


def test_generate_with_a_gated_policy_reports_each_questions_alpha(policy):
    from gan_cot.generation import Sampling, generate

    model, tok = policy
    gp = GatedPolicy(model, AlphaGate(32))
    alphas = []
    done = generate(gp, tok, QUESTIONS, Sampling(max_new_tokens=4, batch_size=2), alphas_out=alphas)
    assert len(done) == 3 and alphas == pytest.approx([1.0, 1.0, 1.0])
    fixed = []
    generate(gp, tok, QUESTIONS[:1], Sampling(max_new_tokens=2), alpha=0.25, alphas_out=fixed)
    assert fixed == [0.25]
    with pytest.raises(ValueError, match="GatedPolicy"):
        generate(model, tok, QUESTIONS[:1], Sampling(max_new_tokens=2), alpha=0.5)


def test_a_batch_that_shares_alpha_0_or_1_skips_the_per_row_scale(policy, monkeypatch):
    """A batch whose rows all get alpha 0 runs on the base (adapter off) and all 1 on the plain adapter, with no
    per-row scale; the completions are those of the scaled delta, token for token. Mixed alphas stay scaled."""
    import gan_cot.gate.scaling as scaling
    from gan_cot.generation import Sampling, generate

    model, tok = policy
    sampling = Sampling(max_new_tokens=6, batch_size=3)

    def scaled(alpha):
        with gated(model, torch.tensor(alpha)):
            return [g[0].text for g in generate(model, tok, QUESTIONS, sampling)]

    calls = []
    real = scaling.gated
    monkeypatch.setattr(scaling, "gated", lambda m, a: calls.append(a) or real(m, a))
    for alpha in (0.0, 1.0):
        done = generate(GatedPolicy(model, alpha=alpha), tok, QUESTIONS, sampling)
        assert [g[0].text for g in done] == scaled([alpha] * 3)
    enc = encode(tok, QUESTIONS)
    GatedPolicy(model, alpha=1.0).generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    assert calls == []  # no batch went through the per-row scale
    with torch.no_grad(), model.disable_adapter():
        base = [g[0].text for g in generate(model, tok, QUESTIONS, sampling)]
    assert scaled([1.0] * 3) != base  # the delta matters, so the check above can fail

    gate = AlphaGate(32, choices=(0.0, 0.5, 1.0))
    monkeypatch.setattr(gate, "forward", lambda f: torch.tensor([0.0, 1.0, 0.5]))
    alphas = []
    done = generate(GatedPolicy(model, gate), tok, QUESTIONS, sampling, alphas_out=alphas)
    assert alphas == [0.0, 1.0, 0.5] and len(calls) == 1
    assert [g[0].text for g in done] == scaled([0.0, 1.0, 0.5])


def test_the_learned_gate_prices_length_within_the_group_and_learns_the_winning_alpha():
    from gan_cot.trainer_config import GateConfig

    learned = LearnedGate(GateConfig(length_coef=0.5, hidden=4))
    lengths = torch.tensor([10.0, 20.0, 30.0])
    adv = learned.adjust_advantages(torch.zeros(3), lengths)
    assert torch.allclose(adv, torch.tensor([0.25, 0.0, -0.25]))  # centred: shorter than the group's mean gains
    torch.manual_seed(0)
    gate = AlphaGate(8, choices=(0.0, 1.0), layer_sizes=(4,))
    learned.gate = gate
    feats = torch.randn(1, 8).expand(4, 8)  # one question, four chains with their own alpha
    alpha = torch.tensor([0.0, 0.0, 1.0, 1.0])
    batch = {"features": feats, "alpha": alpha, "alpha_logp": gate.log_prob(feats, alpha).detach(),
             "seq_adv": torch.tensor([1.0, 1.0, -1.0, -1.0])}  # fmt: skip
    assert learned.extra_loss({"features": feats}, 0.2) is None  # chains without exploration: no gate loss
    opt = torch.optim.SGD(gate.parameters(), lr=0.5)
    p_low = [gate.log_prob(feats[:1], torch.zeros(1)).exp().item()]
    for _ in range(3):
        opt.zero_grad()
        learned.extra_loss(batch, clip_eps=0.2).backward()
        opt.step()
        p_low.append(gate.log_prob(feats[:1], torch.zeros(1)).exp().item())
    assert p_low[0] == pytest.approx(0.5) and p_low[1] > p_low[0] and p_low[2] > p_low[1]
    assert gate(feats[:1]).item() == 0.0  # the low alpha won its group: the gate now picks it


def test_load_gated_policy_reads_adapter_and_gate_unmerged(tiny_model_dir, tmp_path):
    from gan_cot.gate import load_gated_policy
    from gan_cot.models import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(2)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(load_model(str(tiny_model_dir), dtype=torch.float32), cfg).eval()
    gate = AlphaGate(32, choices=(0.0, 1.0, 2.0), pooling="last")
    torch.nn.init.normal_(gate.net[-1].weight, std=1.0)
    torch.nn.init.constant_(gate.net[-1].bias, -20.0)  # the first choice, alpha 0, over the start's pick (2.0)
    model.save_pretrained(tmp_path)
    save_gate(gate, tmp_path)
    enc = encode(tok, QUESTIONS)
    want = GatedPolicy(model, gate)
    got = load_gated_policy(tmp_path)
    assert got.gate is not None and got.fixed_alpha is None
    with torch.no_grad():
        a = want.alpha(enc["input_ids"], enc["attention_mask"])
        assert torch.equal(a, torch.zeros(3))
        assert torch.equal(got.alpha(enc["input_ids"], enc["attention_mask"]), a)
        assert torch.equal(got(**enc).logits, want(**enc).logits)
    assert load_gated_policy(tmp_path, alpha=0.5).fixed_alpha == 0.5


def test_merged_gated_inference_routes_each_question_to_its_alphas_weights(policy, monkeypatch):
    """Each alpha of the grid merged once: a question runs on plain weights W + alpha * delta, no LoRA layers, and
    gets what the unmerged, per-row-scaled policy gives it."""
    from gan_cot.gate.merged import MergedGatedPolicy
    from gan_cot.generation import Sampling, generate

    model, tok = policy
    gate = AlphaGate(32, choices=(0.0, 0.5, 1.0))
    merged = MergedGatedPolicy(model, gate)
    assert set(merged.models) == {0.0, 0.5, 1.0}
    assert not any("lora" in n for n, _ in merged.model_for(1.0).named_parameters())  # plain weights
    enc = encode(tok, QUESTIONS)
    for a in (0.0, 0.5, 1.0):
        with torch.no_grad():
            plain = merged.model_for(a)(**enc).logits
        assert torch.allclose(plain, logits(model, enc, a), atol=1e-4), a
    picks = torch.tensor([1.0, 0.0, 0.5])
    monkeypatch.setattr(gate, "forward", lambda f: picks[: len(f)])
    got, want = [], []
    sampling = Sampling(max_new_tokens=6, batch_size=3)
    merged_out = generate(merged, tok, QUESTIONS, sampling, alphas_out=got)
    unmerged_out = generate(GatedPolicy(model, gate), tok, QUESTIONS, sampling, alphas_out=want)
    assert got == want == picks.tolist()
    assert [g[0].text for g in merged_out] == [g[0].text for g in unmerged_out]
