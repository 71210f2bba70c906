"""Per-token credit and the policy loss, against hand-computed values."""

import math

import torch

from gan_cot.credit import CreditWeights, group_sequence_advantage, sequence_rewards, step_credit, token_advantages
from gan_cot.losses import policy_loss, token_logprobs


def test_step_credit_is_the_expected_weight():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25]])
    w = CreditWeights(useful=0.2, redundant=-1.0, wrong=-2.0)
    assert torch.allclose(step_credit(probs, w), torch.tensor([0.2, -1.0, 0.1 - 0.25 - 0.5]))


def test_group_advantage_and_token_credit_by_hand():
    # a group of two: the first chain is right, the second wrong -> advantages +1 and -1
    adv = group_sequence_advantage(torch.tensor([1.0, 0.0]), eps=0.0)
    assert torch.allclose(adv, torch.tensor([1.0, -1.0]))
    # chain of 7 tokens: step 0 = tokens 0-2 (useful), step 1 = tokens 3-4 (redundant), tokens 5-6 the answer
    credits = torch.tensor([0.2, -1.0])
    t = token_advantages(7, [(0, 3), (3, 5)], credits, seq_advantage=1.0, step_coef=0.5)
    assert torch.allclose(t, torch.tensor([1.1, 1.1, 1.1, 0.5, 0.5, 1.0, 1.0]))
    # equal rewards give no sequence signal, only step credit remains
    assert torch.allclose(group_sequence_advantage(torch.tensor([1.0, 1.0])), torch.zeros(2))


def test_length_only_rewards():
    r = sequence_rewards(torch.tensor([1, 1, 0]), torch.tensor([10, 30, 20]), length_penalty=0.5)
    assert torch.allclose(r, torch.tensor([1 - 0.25, 1 - 0.75, -0.5]))


def test_policy_loss_matches_hand_computation():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    old = torch.log(torch.tensor([[0.25, 0.25, 0.9]]))
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.9]]))
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token does not count
    loss, stats = policy_loss(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.1)
    # token 0: ratio 2 -> clipped to 1.2, A=1: -min(2, 1.2) = -1.2; kl = exp(0) - 0 - 1 = 0
    # token 1: ratio 1, A=-1: 1.0; kl: delta = log 2, exp(delta) - delta - 1 = 1 - log 2
    kl1 = 1 - math.log(2)
    expected = ((-1.2) + (1.0 + 0.1 * kl1)) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert math.isclose(stats["kl"], kl1 / 2, rel_tol=1e-6)
    assert math.isclose(stats["clip_frac"], 0.5)


def test_token_logprobs_shift():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2
    ids = torch.tensor([[1, 2, 3]])
    lp = token_logprobs(logits, ids)
    assert lp.shape == (1, 2) and lp[0, 0] > -0.01 and math.isclose(lp[0, 1].item(), math.log(0.25), rel_tol=1e-5)


def test_chunked_log_probs_equal_the_whole_and_so_do_their_gradients():
    from gan_cot.losses import token_logprobs

    torch.manual_seed(0)
    logits = torch.randn(2, 9, 17, requires_grad=True)
    ids = torch.randint(0, 17, (2, 9))
    whole = token_logprobs(logits, ids, chunk=64)
    (g_whole,) = torch.autograd.grad(whole.sum(), logits)
    chunked = token_logprobs(logits, ids, chunk=3)  # 8 positions in chunks of 3, each recomputed in backward
    (g_chunked,) = torch.autograd.grad(chunked.sum(), logits)
    assert chunked.shape == (2, 8) and torch.equal(chunked, whole)
    assert torch.allclose(g_chunked, g_whole, atol=1e-7)
    with torch.no_grad():
        assert torch.equal(token_logprobs(logits, ids, chunk=3), whole)
