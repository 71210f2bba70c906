"""Budget forcing at inference (S1: Muennighoff et al. 2025, "s1: Simple test-time scaling"; Elastic
Reasoning: Xu et al. 2025, "Scalable Chain of Thoughts via Elastic Reasoning").

No training. The policy thinks for at most ``budget.think_tokens`` tokens; a chain that has not ended by then
gets the end of thinking of the run's chain format (``"\\n####"`` for ``format: hash``) and
``budget.answer_tokens`` more greedy tokens to write its answer: the evaluation's own thinking budget
(:func:`gan_cot.generation.generate_ids`), the same forcing the trainer's rollouts use.
"""

from __future__ import annotations

from gan_cot_lab.baselines.common import Context, Outcome


def train(ctx: Context) -> Outcome:
    b = ctx.cfg.budget
    options = {
        "max_think_tokens": b.think_tokens,
        "max_answer_tokens": b.answer_tokens,
    }
    return Outcome(model=ctx.model, rollouts=0, eval_options=options)
