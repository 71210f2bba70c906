"""Budget forcing at inference (S1: Muennighoff et al. 2025, "s1: Simple test-time scaling"; Elastic
Reasoning: Xu et al. 2025, "Scalable Chain of Thoughts via Elastic Reasoning").

No training. The policy thinks for at most ``budget.think_tokens`` tokens; a chain that has not ended by then
gets the end of thinking (``budget.end_of_thinking``, ``"\\n####"`` here, unless it already wrote it) and
``budget.answer_tokens`` more greedy tokens to write its answer. :class:`BudgetForcedLM` wraps a causal LM so
that its ``generate`` does this, and the ordinary evaluation (:func:`gan_cot.evaluate.evaluate`) scores it.
"""

from __future__ import annotations

import torch

from gan_cot.baselines.common import Context, Outcome


class BudgetForcedLM(torch.nn.Module):
    """A causal LM whose ``generate`` forces the end of thinking after ``think_tokens`` new tokens.

    The returned sequences are the (left-padded) inputs followed by each completion: thinking, the forced
    end-of-thinking text where it was needed, the answer, and the end-of-sequence token where one was written,
    then padding.
    """

    def __init__(self, model, tokenizer, think_tokens: int, answer_tokens: int = 8, end_of_thinking: str = "\n####"):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.think_tokens = think_tokens
        self.answer_tokens = answer_tokens
        self.end_of_thinking = end_of_thinking
        self.forced = 0  # completions whose thinking was cut, over all calls

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    @torch.no_grad()
    def generate(
        self, input_ids, attention_mask=None, max_new_tokens: int = 256, num_return_sequences: int = 1, **kwargs
    ):
        tok = self.tokenizer
        eos = kwargs.get("eos_token_id", tok.eos_token_id)
        pad = kwargs.get("pad_token_id", tok.pad_token_id if tok.pad_token_id is not None else eos)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        reps = num_return_sequences if kwargs.get("do_sample") else 1
        first = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_return_sequences=reps,
            max_new_tokens=min(self.think_tokens, max_new_tokens), **kwargs,
        )  # fmt: skip
        width = input_ids.shape[1]
        prompts = input_ids.repeat_interleave(reps, dim=0)  # [batch * reps, width]
        masks = attention_mask.repeat_interleave(reps, dim=0)
        marker = tok(self.end_of_thinking, add_special_tokens=False)["input_ids"]
        completions: list[list[int]] = []
        todo: list[int] = []
        for i, row in enumerate(first[:, width:].tolist()):
            if eos in row:  # ended inside the budget
                completions.append(row[: row.index(eos) + 1])
                continue
            if self.end_of_thinking.strip() not in tok.decode(row, skip_special_tokens=True):
                row = row + marker
            completions.append(row)
            todo.append(i)
        self.forced += len(todo)
        if todo and self.answer_tokens > 0:
            seqs = [prompts[i][masks[i].bool()].tolist() + completions[i] for i in todo]
            longest = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
            att = torch.zeros((len(seqs), longest), dtype=torch.long)
            for j, s in enumerate(seqs):  # left padding, as generation expects
                ids[j, longest - len(s) :] = torch.tensor(s)
                att[j, longest - len(s) :] = 1
            device = input_ids.device
            answer = self.model.generate(
                input_ids=ids.to(device), attention_mask=att.to(device), do_sample=False,
                max_new_tokens=self.answer_tokens, pad_token_id=pad, eos_token_id=eos,
            )[:, longest:].tolist()  # fmt: skip
            for j, i in enumerate(todo):
                extra = answer[j]
                completions[i] += extra[: extra.index(eos) + 1] if eos in extra else extra
        out = torch.full((len(completions), width + max(map(len, completions))), pad, dtype=torch.long)
        out[:, :width] = prompts
        for i, c in enumerate(completions):
            out[i, width : width + len(c)] = torch.tensor(c, dtype=torch.long)
        return out.to(input_ids.device)


def train(ctx: Context) -> Outcome:
    b = ctx.cfg.budget
    model = BudgetForcedLM(ctx.model, ctx.tokenizer, b.think_tokens, b.answer_tokens, b.end_of_thinking)
    return Outcome(model=model, rollouts=0)
