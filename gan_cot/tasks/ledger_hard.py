"""Ledger-hard: the built-in task with headroom, where the shortest chain a policy can still get right depends on
the question.

Three people and one timeline: the question gives everyone's starting count, then the events in the order they
happened, everyone's interleaved, and asks for one person's final count::

    Ann has 7 coins. Bob has 4 coins. Cal has 9 coins. Bob loses 2 coins. Ann finds 3 coins. Cal wins 1 coins.
    Ann sells 5 coins. How many coins does Ann have?

The generator writes any question's chain at every **granularity** (:data:`GRANULARITIES`), each with gold labels:

* ``timeline``: every event in the question's order, an update for the person asked about and ``skip: Bob loses 2``
  for the others: the verbose chain without its restatements, checks, detours and slips;
* ``1``: one update per event on the person asked about (``Ann finds 3, 7 + 3 = 10``), ledger's minimal chain;
* ``2`` / ``3``: consecutive events merged into one step (``Ann: 7 + 3 - 5 = 5``);
* ``line``: every event in one step; ``direct``: no step at all, only ``#### 5``.

Merging saves tokens but asks more of a tiny model in one step, so easy questions (one or two events) can be
answered in a line or directly and hard ones (five or six) need the steps. The **verbose chain** (the base's
training data and the task's reference chain) walks the timeline event by event, in the question's order: it says
which events of the other two people it passes over (``skip: Cal buys 7``), updates the person asked about on each
of theirs, adds ``restate`` / ``check`` / ``detour`` steps (redundant) and ``slip`` / ``wrong_op`` steps that the next
step corrects (wrong), now and then merges two or three of the target's events into one step (``merge``: the later
ones have to be found further on in the question), and for some questions writes only a line or a direct answer:
the base has seen every granularity, and samples them, while its greedy chain is the long one. A chain without the
skips (every shorter granularity) has to find each next event of the person asked about among the others' by itself.
The base is trained short of perfect (models/README.md), so accuracy can rise as well as fall.

Difficulty is the number of events on the person asked about (1 to 6). Splits are ledger's: disjoint by a hash of
the question text. :func:`gold_labels` labels ANY chain (a policy's sample included) by replaying the truth, and
:func:`execute` replays what a chain believes, so both can be checked mechanically (see the tests).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from gan_cot.tasks.base import Example, StepRecord
from gan_cot.tasks.ledger import (
    _CHECK_RE,
    _DETOUR_RE,
    _EVENT_UPDATE_RE,
    _RESTATE_RE,
    GAIN_VERBS,
    ITEMS,
    LOSS_VERBS,
    MAX_COUNT,
    NAMES,
    Event,
    LedgerTask,
    Problem,
    _arith,
    _update,
    parse_problem,
)

GRANULARITIES = ("timeline", "1", "2", "3", "line", "direct")
"""Chunk sizes of a chain, longest first: one step per event of the timeline (``timeline``: an update for each of
the asked person's events, a ``skip:`` for everyone else's), events per step of the asked person alone (1, 2, 3),
all of them in one step (line), or no step (direct)."""

_SKIP_RE = re.compile(r"^skip: (\w+) ([a-z ]+) (\d+)$")
_MERGED_RE = re.compile(r"^(\w+): (\d+)((?: [+-] \d+)+) = (\d+)$")
_TERM_RE = re.compile(r" ([+-]) (\d+)")


class Timeline(Problem):
    """A ledger problem whose question lists the events in time order, everyone's interleaved."""

    def question(self) -> str:
        parts = [f"{p} has {n} {self.item}." for p, n in self.start.items()]
        parts += [f"{e.person} {e.verb} {abs(e.delta)} {self.item}." for e in self.events]
        parts.append(f"How many {self.item} does {self.target} have?")
        return " ".join(parts)

    def target_events(self) -> list[Event]:
        return [e for e in self.events if e.person == self.target]


def sample_timeline(rng: random.Random, max_useful: int = 6, max_events: int = 10, people: int = 3) -> Timeline:
    """Draw one problem: ``people`` people, 1..max_useful events on the target and some on the others, shuffled
    into one timeline; every count stays in [0, MAX_COUNT]."""
    names = rng.sample(NAMES, people)
    item = rng.choice(ITEMS)
    start = {p: rng.randint(1, 20) for p in names}
    target = names[0]
    n_useful = rng.randint(1, max_useful)
    owners = [target] * n_useful + [rng.choice(names[1:]) for _ in range(rng.randint(0, max_events - n_useful))]
    rng.shuffle(owners)
    counts = dict(start)
    events = []
    for person in owners:
        now = counts[person]
        if now > MAX_COUNT - 9 or (now > 9 and rng.random() < 0.5):
            delta, verb = -rng.randint(1, min(9, now)), rng.choice(LOSS_VERBS)
        else:
            delta, verb = rng.randint(1, 9), rng.choice(GAIN_VERBS)
        counts[person] = now + delta
        events.append(Event(person, delta, verb))
    order = list(names)
    rng.shuffle(order)  # the person asked about is not always named first
    return Timeline(item=item, start={p: start[p] for p in order}, events=tuple(events), target=target)


def skip_step(event: Event) -> str:
    """``skip: Cal buys 7``: the verbose chain passes over an event of someone not asked about."""
    return f"skip: {event.person} {event.verb} {abs(event.delta)}"


def merged_step(person: str, before: int, deltas: list[int], after: int | None = None) -> str:
    """``Ann: 7 + 3 - 5 = 5``: several events of one person in one step (``after`` overrides it for slips)."""
    terms = "".join(f" {'+' if d > 0 else '-'} {abs(d)}" for d in deltas)
    return f"{person}: {before}{terms} = {before + sum(deltas) if after is None else after}"


def chunk_size(granularity: str, n_events: int) -> int:
    """Events per step at ``granularity`` for a question with ``n_events`` target events (0: direct)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {list(GRANULARITIES)}")
    if granularity == "direct":
        return 0
    if granularity == "timeline":
        return 1
    return max(1, n_events) if granularity == "line" else int(granularity)


def chunk_step(problem: Problem, events: list[Event], before: int) -> str:
    """One useful step applying ``events`` (one or more of the target's) to ``before``."""
    if len(events) == 1:
        return _update(events[0], before)
    return merged_step(problem.target, before, [e.delta for e in events])


def granular_steps(problem: Timeline, granularity: str) -> list[str]:
    """The chain of ``problem`` at ``granularity``: only useful steps, ``chunk_size`` target events each."""
    events = problem.target_events()
    k = chunk_size(granularity, len(events))
    if k == 0:
        return []
    if granularity == "timeline":
        count, steps = problem.start[problem.target], []
        for e in problem.events:
            if e.person != problem.target:
                steps.append(skip_step(e))
                continue
            steps.append(_update(e, count))
            count += e.delta
        return steps
    steps, count = [], problem.start[problem.target]
    for i in range(0, len(events), k):
        chunk = events[i : i + k]
        steps.append(chunk_step(problem, chunk, count))
        count += sum(e.delta for e in chunk)
    return steps


@dataclass
class HardVerbosity:
    """How the verbose chain is written: per-opportunity probabilities of each extra step, of a merge, and the
    share of questions answered by a line or directly."""

    restate: float = 0.5
    check: float = 0.6
    detour: float = 0.2
    wrong: float = 0.1
    skip: float = 1.0  # another person's event: ``skip: Cal buys 7`` (redundant)
    merge: float = 0.12  # a target event starts a step merging it with the next one or two
    line: float = 0.06
    direct: float = 0.06

    @classmethod
    def random(cls, rng: random.Random) -> HardVerbosity:
        """A random mix, from terse to very verbose (discriminator training data)."""
        return cls(
            restate=rng.random(), check=rng.random(), detour=rng.random() * 0.5, wrong=rng.random() * 0.4,
            skip=rng.choice((0.0, 0.5, 1.0)), merge=rng.choice((0.0, 0.3, 0.7)), line=0.1, direct=0.0,
        )  # fmt: skip


def write_hard_chains(problem: Timeline, rng: random.Random, v: HardVerbosity | None = None):
    """The verbose chain of a problem (steps, labels, kinds) through the whole timeline; see the module docstring."""
    v = v or HardVerbosity()
    style = rng.random()
    if style < v.direct:
        return [], [], []
    if style < v.direct + v.line:
        return granular_steps(problem, "line"), ["useful"], ["line"]
    chain: tuple[list[str], list[str], list[str]] = ([], [], [])  # steps, labels, kinds

    def add(*step: str) -> None:
        for column, value in zip(chain, step):
            column.append(value)

    target_events = problem.target_events()
    detour_at = rng.randrange(len(target_events)) if rng.random() < v.detour else -1
    person, done = problem.target, 0  # done: target events written so far
    counts = {person: problem.start[person]}
    for event in problem.events:  # through the timeline, in the order the question tells it
        if event.person != person:
            if v.skip >= 1.0 or rng.random() < v.skip:
                add(skip_step(event), "redundant", "skip")
            continue
        if done >= len(target_events) or target_events[done] is not event:
            continue  # merged into an earlier step
        size = rng.choice((2, 3)) if rng.random() < v.merge else 1
        chunk = target_events[done : done + size]
        e, before, after = chunk[0], counts[person], counts[person] + sum(c.delta for c in chunk)
        if rng.random() < v.wrong:
            if len(chunk) == 1 and rng.random() < 0.5 and before - e.delta >= 0:  # wrong operation: sign flipped
                add(_update(e, before, delta=-e.delta), "wrong", "wrong_op")
            else:  # arithmetic slip
                off = rng.choice([d for d in (-2, -1, 1, 2) if 0 <= after + d <= MAX_COUNT + 9])
                slip = _update(e, before, after=after + off) if len(chunk) == 1 else None
                add(slip or merged_step(person, before, [c.delta for c in chunk], after + off), "wrong", "slip")
        add(chunk_step(problem, chunk, before), "useful", "update" if len(chunk) == 1 else "merge")
        counts[person], done = after, done + len(chunk)
        if rng.random() < v.restate:
            add(f"so {person} has {after}", "redundant", "restate")
        if done - len(chunk) <= detour_at < done and after + 4 <= MAX_COUNT + 9:
            k = rng.randint(1, 4)
            add(f"{person}: {after} + {k} = {after + k}, {after + k} - {k} = {after}", "redundant", "detour")
        if done == len(target_events) and len(chunk) == 1 and rng.random() < v.check:
            add(f"check: {after} {'-' if e.delta > 0 else '+'} {abs(e.delta)} = {before}", "redundant", "check")
    return chain


def _terms(text: str) -> list[int]:
    return [int(d) if op == "+" else -int(d) for op, d in _TERM_RE.findall(text)]


def execute(steps: list[str], start: dict[str, int]) -> dict[str, int]:
    """Replay a chain: an update (``P verb d, a +/- d = b``), a merged step (``P: a +/- d ... = b``) or a detour
    sets P's count to b, as written (the chain's own belief); other steps change nothing."""
    counts = dict(start)
    for s in steps:
        s = s.strip()
        m = _EVENT_UPDATE_RE.match(s) or _MERGED_RE.match(s) or _DETOUR_RE.match(s)
        if m and m.group(1) in counts:
            counts[m.group(1)] = int(m.groups()[-1])
    return counts


class _Truth:
    """The true state while a chain is replayed: each person's count and how many of their events were applied."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.count = dict(problem.start)
        self.applied = dict.fromkeys(problem.start, 0)
        self.events = {p: [e for e in problem.events if e.person == p] for p in problem.start}

    def advance(self, person: str, before: int, deltas: list[int], verb: str | None = None) -> bool:
        """Apply ``deltas`` as the person's next events if they match them and ``before`` is the true count. Another
        person's events may skip some of theirs (a chain need not write them all): any later run of their events
        applied to their true count before it is a true statement."""
        events = self.events[person]
        starts = [self.applied[person]] if person == self.problem.target else range(self.applied[person], len(events))
        for j in starts:
            run = events[j : j + len(deltas)]
            count = self.problem.start[person] + sum(e.delta for e in events[:j])
            if before == count and [e.delta for e in run] == deltas and (verb is None or run[0].verb == verb):
                self.count[person] = count + sum(deltas)
                self.applied[person] = j + len(deltas)
                return True
        return False

    def is_repeat(self, person: str, deltas: list[int]) -> bool:
        """Whether ``deltas`` restate events already applied (consecutive, in order)."""
        done = [e.delta for e in self.events[person][: self.applied[person]]]
        return any(done[i : i + len(deltas)] == deltas for i in range(len(done) - len(deltas) + 1))


def gold_labels(problem: Problem, steps: list[str]) -> list[str]:
    """The gold label of every step of ANY chain written for ``problem``, by replaying the truth.

    useful: the next event(s) of the person asked about, applied to the true count with the right arithmetic (a
    single update or a merged step). redundant: a true statement that does not advance that person (another
    person's update or merged step on their own true count, a restatement, a check, a detour, a correct repeat).
    wrong: a false statement (bad arithmetic, a wrong count, events that do not match) or an unreadable step.
    """
    truth = _Truth(problem)
    return [_label(truth, s.strip()) for s in steps]


def _label(truth: _Truth, s: str) -> str:
    """One step's gold label, the truth advanced past it (see :func:`gold_labels`)."""
    if m := _EVENT_UPDATE_RE.match(s):  # P verb d, a +/- d = b
        person, verb, amount, a, op, d, b = m.groups()
        sign = 1 if verb in GAIN_VERBS else -1 if verb in LOSS_VERBS else 0
        true = sign != 0 and _arith(a, op, d, b) and d == amount and (op == "+") == (sign > 0)
        return _advance_label(truth, person, int(a), [sign * int(d)], verb) if true else "wrong"
    if m := _SKIP_RE.match(s):  # skip: P verb d
        person, verb, amount = m.groups()
        sign = 1 if verb in GAIN_VERBS else -1
        event = Event(person, sign * int(amount), verb)
        return "redundant" if person != truth.problem.target and event in truth.problem.events else "wrong"
    if m := _CHECK_RE.match(s):  # check: a +/- d = b
        return "redundant" if _arith(*m.groups()) else "wrong"
    if m := _MERGED_RE.match(s):  # P: a +/- d ... = b
        person, a, terms, b = m.groups()
        deltas = _terms(terms)
        return _advance_label(truth, person, int(a), deltas) if int(a) + sum(deltas) == int(b) else "wrong"
    if m := _RESTATE_RE.match(s):  # so P has n
        person, n = m.groups()
        return "redundant" if truth.count.get(person) == int(n) else "wrong"
    if m := _DETOUR_RE.match(s):  # P: a + k = c, c - k = a
        person, a, kk, c, c2, kk2, b = m.groups()
        ok = _arith(a, "+", kk, c) and c == c2 and kk == kk2 and _arith(c2, "-", kk2, b)
        return "redundant" if ok and truth.count.get(person) == int(a) else "wrong"
    return "wrong"


def _advance_label(truth: _Truth, person: str, before: int, deltas: list[int], verb: str | None = None) -> str:
    """useful / redundant / wrong for a step with true arithmetic that moves ``person`` by ``deltas``."""
    if person not in truth.count:
        return "wrong"
    if truth.advance(person, before, deltas, verb):
        return "useful" if person == truth.problem.target else "redundant"
    return "redundant" if person == truth.problem.target and truth.is_repeat(person, deltas) else "wrong"


class LedgerHardTask(LedgerTask):
    """The harder built-in task; see the module docstring. Deterministic in ``seed``."""

    name = "ledger-hard"

    def __init__(self, seed: int = 0, verbosity: HardVerbosity | None = None, max_useful: int = 6,
                 max_events: int = 10):  # fmt: skip
        super().__init__(seed=seed, max_useful=max_useful, max_events=max_events)
        self.verbosity = verbosity or HardVerbosity()

    def sample(self, rng: random.Random) -> Timeline:
        return sample_timeline(rng, self.max_useful, self.max_events)

    def example(self, problem: Timeline, rng: random.Random, id: str) -> Example:
        steps, labels, kinds = write_hard_chains(problem, rng, self.verbosity)
        return self.make_example(id, problem, steps, labels, kinds, granular_steps(problem, "1"))

    def problem(self, example: Example) -> Timeline:
        p = parse_problem(example.question)
        return Timeline(item=p.item, start=p.start, events=p.events, target=p.target)

    def granular_steps(self, example: Example, granularity: str) -> list[str]:
        """The example's chain at ``granularity`` (:data:`GRANULARITIES`): useful steps only (and the skips of
        ``timeline``, redundant)."""
        return granular_steps(self.problem(example), granularity)

    def final_counts(self, completion: str, example: Example) -> dict[str, int]:
        """What a completion's chain believes each person holds at the end (merged steps included)."""
        return execute([s.text for s in self.format.steps(completion)], example.meta["start"])

    def gold_labels(self, example: Example, steps: list[str]) -> list[str]:
        return gold_labels(parse_problem(example.question), steps)

    def step_records(self, split: str, n: int | None, seed: int = 0) -> list:
        """Gold-labelled chains for discriminator training: each question rewritten at a random verbosity, merges
        and lines included, so the discriminator also sees the compressed chains a policy writes."""
        rng = random.Random(f"{self.name}-records-{seed}-{split}")
        out = []
        for ex in self.examples(split, n or 1000):
            steps, labels, _ = write_hard_chains(self.problem(ex), rng, HardVerbosity.random(rng))
            if steps:
                out.append(StepRecord(ex.question, steps, labels, ex.id))
        return out
