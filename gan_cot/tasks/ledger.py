"""Ledger: the built-in step-labeled reasoning task.

A ledger problem tracks how many items a few people hold through a list of events and asks for one
person's final count::

    Bob has 4 coins. Bob loses 2 coins. Ann has 7 coins. Ann finds 3 coins. Ann sells 5 coins.
    How many coins does Ann have?

The generator writes two chains for every problem and knows the gold label of every step:

* the **minimal chain** holds only the useful steps: one update per event on the person asked about
  (``Ann finds 3, 7 + 3 = 10`` then ``Ann sells 5, 10 - 5 = 5``), then ``#### 5``;
* the **verbose chain** is the minimal chain with extra steps mixed in, each labeled:
  ``redundant`` steps of four kinds (``restate`` a value just computed, ``check`` a result with the
  inverse operation, ``unused``: update a person nobody asked about, ``detour``: add and take away the
  same amount) and ``wrong`` steps (a slip in the arithmetic or the wrong operation) that the next
  step corrects by writing the right update.

Difficulty is the number of useful steps (events on the person asked about, 1 to 6). A problem may
carry many events on other people, so some questions need every step while others can be answered
in a line: there is something for a model to adapt its chain length to.

Deleting every redundant and wrong step from the verbose chain gives exactly the minimal chain, and
:func:`execute` replays any chain, so the labels can be checked mechanically (see the tests).

Splits are disjoint by construction: each generated question is routed to train / validation / test
by a hash of its text, so the same question can never land in two splits.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from gan_cot.tasks.base import Example, TaskBase

NAMES = ("Ann", "Bob", "Cal", "Dan", "Eve", "Fay")
ITEMS = ("apples", "pens", "coins", "books", "cards", "stamps", "shells", "marbles")
GAIN_VERBS = ("buys", "finds", "gets", "wins")
LOSS_VERBS = ("sells", "loses", "eats", "gives away")
MAX_COUNT = 50  # counts stay in [0, MAX_COUNT]: a small, closed arithmetic table a tiny model can learn
SPLITS = ("train", "validation", "test")
_SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}

_UPDATE_RE = re.compile(r"^(\w+) [a-z ]+ \d+, (\d+) ([+-]) (\d+) = (\d+)$")
_EVENT_UPDATE_RE = re.compile(r"^(\w+) ([a-z ]+) (\d+), (\d+) ([+-]) (\d+) = (\d+)$")
_RESTATE_RE = re.compile(r"^so (\w+) has (\d+)$")
_CHECK_RE = re.compile(r"^check: (\d+) ([+-]) (\d+) = (\d+)$")
_DETOUR_RE = re.compile(r"^(\w+): (\d+) \+ (\d+) = (\d+), (\d+) - (\d+) = (\d+)$")


@dataclass(frozen=True)
class Event:
    person: str
    delta: int  # signed change
    verb: str


@dataclass(frozen=True)
class Problem:
    item: str
    start: dict[str, int]
    events: tuple[Event, ...]
    target: str

    def question(self) -> str:
        parts = []
        for p, n in self.start.items():
            parts.append(f"{p} has {n} {self.item}.")
            parts += [f"{e.person} {e.verb} {abs(e.delta)} {self.item}." for e in self.events if e.person == p]
        parts.append(f"How many {self.item} does {self.target} have?")
        return " ".join(parts)

    def answer(self) -> int:
        return self.start[self.target] + sum(e.delta for e in self.events if e.person == self.target)


def _update(event: Event, before: int, delta: int | None = None, after: int | None = None) -> str:
    """``Ann finds 3, 7 + 3 = 10``: the event, then the arithmetic (``delta``/``after`` override it for slips)."""
    delta = event.delta if delta is None else delta
    after = before + delta if after is None else after
    return (
        f"{event.person} {event.verb} {abs(event.delta)}, {before} {'+' if delta > 0 else '-'} {abs(delta)} = {after}"
    )


def _route(question: str) -> str:
    bucket = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 100
    return next(s for s, r in _SPLIT_BUCKETS.items() if bucket in r)


def sample_problem(rng: random.Random, max_useful: int = 6, max_events: int = 8) -> Problem:
    """Draw one problem: two people, 1..max_useful events on the target, some events on the other.

    Each person's events follow their starting count in the question, so a chain that goes through the
    question in order always updates the count it just wrote: the task is about which steps to write,
    not about remembering counts far back.
    """
    people = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    start = {p: rng.randint(1, 20) for p in people}
    target = people[0]
    n_useful = rng.randint(1, max_useful)
    n_other = rng.randint(0, max(0, max_events - n_useful))
    owners = [target] * n_useful + [rng.choice(people[1:]) for _ in range(n_other)]
    order = list(people)
    rng.shuffle(order)  # the person asked about is not always named first
    counts = dict(start)
    events = []
    for person in order:
        for _ in range(owners.count(person)):
            now = counts[person]
            if now > MAX_COUNT - 9 or (now > 9 and rng.random() < 0.5):
                delta = -rng.randint(1, min(9, now))
                verb = rng.choice(LOSS_VERBS)
            else:
                delta = rng.randint(1, 9)
                verb = rng.choice(GAIN_VERBS)
            counts[person] = now + delta
            events.append(Event(person, delta, verb))
    return Problem(item=item, start={p: start[p] for p in order}, events=tuple(events), target=target)


@dataclass
class Verbosity:
    """How often the verbose chain adds each kind of extra step (probabilities per opportunity)."""

    restate: float = 0.6
    check: float = 0.7
    detour: float = 0.25
    wrong: float = 0.12
    unused: float = 1.0  # update a person nobody asked about

    @classmethod
    def random(cls, rng: random.Random) -> Verbosity:
        """A random mix, from terse to very verbose (for training data that covers compressed chains too)."""
        return cls(
            restate=rng.random(), check=rng.random(), detour=rng.random() * 0.5,
            wrong=rng.random() * 0.4, unused=rng.choice((0.0, 0.5, 1.0)),
        )  # fmt: skip


def write_chains(problem: Problem, rng: random.Random, verbosity: Verbosity | None = None):
    """The verbose chain (steps, labels, kinds) and the minimal chain of a problem."""
    v = verbosity or Verbosity()
    counts = dict(problem.start)
    steps: list[str] = []
    labels: list[str] = []
    kinds: list[str] = []

    def add(text: str, label: str, kind: str) -> None:
        steps.append(text)
        labels.append(label)
        kinds.append(kind)

    last_target = max(i for i, e in enumerate(problem.events) if e.person == problem.target)
    detour_at = rng.randrange(len(problem.events)) if rng.random() < v.detour else -1
    for i, e in enumerate(problem.events):
        before = counts[e.person]
        after = before + e.delta
        counts[e.person] = after
        if e.person != problem.target:
            if v.unused >= 1.0 or rng.random() < v.unused:
                add(_update(e, before), "redundant", "unused")
            continue
        if rng.random() < v.wrong:
            if rng.random() < 0.5 and before - e.delta >= 0:  # wrong operation: sign flipped
                add(_update(e, before, delta=-e.delta), "wrong", "wrong_op")
            else:  # arithmetic slip
                off = rng.choice([d for d in (-2, -1, 1, 2) if 0 <= after + d <= MAX_COUNT + 9])
                add(_update(e, before, after=after + off), "wrong", "slip")
        add(_update(e, before), "useful", "update")
        if rng.random() < v.restate:
            add(f"so {e.person} has {after}", "redundant", "restate")
        if i == detour_at and after + 4 <= MAX_COUNT + 9:
            k = rng.randint(1, 4)
            add(f"{e.person}: {after} + {k} = {after + k}, {after + k} - {k} = {after}", "redundant", "detour")
        if i == last_target and rng.random() < v.check:
            op = "-" if e.delta > 0 else "+"
            add(f"check: {after} {op} {abs(e.delta)} = {before}", "redundant", "check")
    minimal = [s for s, lab in zip(steps, labels) if lab == "useful"]
    return steps, labels, kinds, minimal


def execute(steps: list[str], start: dict[str, int]) -> dict[str, int]:
    """Replay a chain: update steps (``P verb d, a +/- d = b``) set P's count to b; detours (``P: a + k = c,
    c - k = b``) set it to b; other steps change nothing.

    An update whose left side does not match P's current count is taken as written (the chain's own
    belief); the checks on the labels compare that belief with the truth.
    """
    counts = dict(start)
    for s in steps:
        m = _UPDATE_RE.match(s)
        if m and m.group(1) in counts:
            counts[m.group(1)] = int(m.group(5))
            continue
        m = _DETOUR_RE.match(s)
        if m and m.group(1) in counts:
            counts[m.group(1)] = int(m.group(7))
    return counts


def _arith(a: str, op: str, d: str, b: str) -> bool:
    return (int(a) + int(d) if op == "+" else int(a) - int(d)) == int(b)


def gold_labels(problem: Problem, steps: list[str]) -> list[str]:
    """The gold label of every step of ANY ledger chain (a policy's sample included), by replaying the truth.

    useful: the next event of the person asked about, applied to the true count with the right
    arithmetic (the first time). redundant: a true statement that does not advance that person
    (another person's update, a restatement, a check, a detour, a repeat). wrong: a false statement
    (bad arithmetic, a wrong count, an operation that does not match the event) or an unreadable step.
    """
    truth = dict(problem.start)
    target_events = [e for e in problem.events if e.person == problem.target]
    k = 0  # target events applied correctly so far
    other_seen: dict[str, int] = {}
    labels = []
    for s in steps:
        s = s.strip()
        label = "wrong"
        if m := _EVENT_UPDATE_RE.match(s):
            person, verb, amount, a, op, d, b = m.groups()
            sign = 1 if verb in GAIN_VERBS else -1 if verb in LOSS_VERBS else 0
            consistent = sign != 0 and _arith(a, op, d, b) and d == amount and (op == "+") == (sign > 0)
            if person == problem.target:
                if consistent and k < len(target_events):
                    e = target_events[k]
                    if e.verb == verb and abs(e.delta) == int(amount) and int(a) == truth[person]:
                        label = "useful"
                        truth[person] += e.delta
                        k += 1
                if label == "wrong" and consistent and k > 0:
                    done = target_events[:k]
                    if any(e.verb == verb and abs(e.delta) == int(amount) for e in done):
                        label = "redundant"  # a correct repeat of an update already made
            elif person in truth and consistent:
                # another person's update: true arithmetic on that person's own running count
                events = [e for e in problem.events if e.person == person]
                n = other_seen.get(person, 0)
                start = problem.start[person] + sum(e.delta for e in events[:n])
                if (
                    n < len(events)
                    and int(a) == start
                    and events[n].verb == verb
                    and abs(events[n].delta) == int(amount)
                ):
                    other_seen[person] = n + 1
                    label = "redundant"
        elif m := _RESTATE_RE.match(s):
            person, n = m.groups()
            if person == problem.target and int(n) == truth[person]:
                label = "redundant"
            elif person in problem.start and person != problem.target:
                events = [e for e in problem.events if e.person == person][: other_seen.get(person, 0)]
                label = "redundant" if int(n) == problem.start[person] + sum(e.delta for e in events) else "wrong"
        elif m := _CHECK_RE.match(s):
            label = "redundant" if _arith(*m.groups()) else "wrong"
        elif m := _DETOUR_RE.match(s):
            person, a, kk, c, c2, kk2, b = m.groups()
            ok = _arith(a, "+", kk, c) and c == c2 and kk == kk2 and _arith(c2, "-", kk2, b)
            if person == problem.target:
                ok = ok and int(a) == truth[person]
            label = "redundant" if ok and person in problem.start else "wrong"
        labels.append(label)
    return labels


def parse_problem(question: str) -> Problem:
    """Rebuild the :class:`Problem` behind a ledger question (for replaying chains and gold labels)."""
    verbs = {v: 1 for v in GAIN_VERBS} | {v: -1 for v in LOSS_VERBS}
    sentences = [s.strip() for s in question.split(".") if s.strip()]
    start: dict[str, int] = {}
    events = []
    item = ""
    target = ""
    for s in sentences:
        if s.startswith("How many"):
            m = re.match(r"How many (\w+) does (\w+) have\?", s)
            if not m:
                raise ValueError(f"not a ledger question: {question!r}")
            item, target = m.groups()
            continue
        m = re.match(r"(\w+) has (\d+) (\w+)$", s)
        if m:
            start[m.group(1)] = int(m.group(2))
            continue
        m = re.match(r"(\w+) (.+) (\d+) (\w+)$", s)
        if not m or m.group(2) not in verbs:
            raise ValueError(f"not a ledger sentence: {s!r}")
        events.append(Event(m.group(1), verbs[m.group(2)] * int(m.group(3)), m.group(2)))
    return Problem(item=item, start=start, events=tuple(events), target=target)


class LedgerTask(TaskBase):
    """The built-in task; see the module docstring. Deterministic in ``seed``."""

    name = "ledger"

    def __init__(self, seed: int = 0, verbosity: Verbosity | None = None, max_useful: int = 6, max_events: int = 8):
        self.seed = seed
        self.verbosity = verbosity or Verbosity()
        self.max_useful = max_useful
        self.max_events = max_events
        self._cache: dict[str, list[Example]] = {s: [] for s in SPLITS}
        self._rng = random.Random(seed)
        self._seen: set[str] = set()
        self._drawn = 0

    def _fill(self, split: str, n: int) -> None:
        # one shared stream routed by question hash: splits are disjoint and each split's first n
        # examples do not depend on how many examples of the other splits were asked for first
        while len(self._cache[split]) < n:
            problem = self.sample(self._rng)
            chain_rng = random.Random(f"{self.seed}-{self._drawn}")
            self._drawn += 1
            q = problem.question()
            if q in self._seen:
                continue
            self._seen.add(q)
            s = _route(q)
            self._cache[s].append(
                self.example(problem, chain_rng, f"{self.name}-{self.seed}-{s}-{len(self._cache[s])}")
            )

    def sample(self, rng: random.Random) -> Problem:
        """One problem of this task (a variant draws its own kind)."""
        return sample_problem(rng, self.max_useful, self.max_events)

    def example(self, problem: Problem, rng: random.Random, id: str) -> Example:
        """The :class:`Example` of a problem: its verbose chain (drawn with ``rng``), labels and minimal chain."""
        return self.make_example(id, problem, *write_chains(problem, rng, self.verbosity))

    @staticmethod
    def make_example(id: str, problem: Problem, steps, labels, kinds, minimal) -> Example:
        return Example(
            id=id,
            question=problem.question(),
            steps=steps,
            answer=str(problem.answer()),
            labels=labels,
            minimal_steps=minimal,
            difficulty=len(minimal),
            meta={"kinds": kinds, "start": dict(problem.start), "target": problem.target},
        )

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; choose one of {list(SPLITS)}")
        if n is None:
            n = {"train": 20000, "validation": 1000, "test": 1000}[split]
        self._fill(split, n)
        return self._cache[split][:n]

    def final_counts(self, completion: str, example: Example) -> dict[str, int]:
        """What a completion's chain believes each person holds at the end."""
        return execute([s.text for s in self.format.steps(completion)], example.meta["start"])

    def verify(self, completion: str, example: Example) -> bool:
        return self.format.extract_answer(completion) == example.answer

    def gold_labels(self, example: Example, steps: list[str]) -> list[str]:
        """Gold labels for any chain written for ``example`` (see :func:`gold_labels`)."""
        return gold_labels(parse_problem(example.question), steps)
