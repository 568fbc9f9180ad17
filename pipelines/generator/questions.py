"""The questions the app's game modes ask, as one bank built once from :mod:`vocab`.

Every question of a (question type, difficulty) pool has an index; a game session
walks a pool with a stride that is prime to its size, so a session never asks the
same question twice (a retry after a wrong answer is the same question's second
attempt, not a new question).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipelines.generator import vocab

MODES = list(vocab.GAME_MODES)  # index = mode
LEVELS = [name for name, _ in vocab.DIFFICULTIES]  # index = difficulty
LEVEL_SHARES = [share for _, share in vocab.DIFFICULTIES]
TYPES: list[str | None] = list(dict.fromkeys(t for *_, types in vocab.GAME_MODES.values() for t in types))
# Strides: primes above every pool size, so each is prime to every pool.
STRIDES = np.array([7933, 7937, 7949, 7951, 7963, 7993])
_SYMBOL = {"addition": "+", "subtraction": "-", "multiplication": "×", "division": "÷"}


@dataclass(frozen=True)
class Bank:
    """Flat arrays of questions, and where each (type, level) pool starts in them and how long it is."""

    text: np.ndarray
    answer: np.ndarray
    wrong: np.ndarray  # (questions, 2): two wrong answers a child gives
    start: np.ndarray  # (types, levels)
    size: np.ndarray  # (types, levels)
    type_cdf: np.ndarray  # (modes, types): cumulative share of each question type in a mode's sessions
    ease: np.ndarray  # (types,)


def _math(kind: str, level: str) -> list[tuple[str, str, str, str]]:
    (x0, x1), (y0, y1) = vocab.MATH_OPERANDS[kind][level]
    out = []
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            a, b, answer = {"addition": (x, y, x + y), "subtraction": (x + y, y, x), "multiplication": (x, y, x * y),
                            "division": (x * y, y, x)}[kind]
            up, down = 1 + (x + 2 * y) % 3, 1 + (2 * x + y) % 3
            below = answer - down if answer - down >= 0 else answer + up + 1
            out.append((f"What is {a} {_SYMBOL[kind]} {b}?", str(answer), str(answer + up), str(below)))
    return out


@functools.cache
def bank() -> Bank:
    """The question bank (the same for every seed: the app's questions do not depend on the fleet)."""
    rows: list[tuple[str, str, str, str]] = []
    start = np.zeros((len(TYPES), len(LEVELS)), dtype=np.int64)
    size = np.zeros((len(TYPES), len(LEVELS)), dtype=np.int64)
    for t, kind in enumerate(TYPES):
        shared = None if kind in vocab.MATH_OPERANDS else len(rows)
        if shared is not None:
            rows += vocab.WORD_QUESTIONS[kind]
        for lv, level in enumerate(LEVELS):
            if shared is None:
                start[t, lv] = len(rows)
                rows += _math(kind, level)
                size[t, lv] = len(rows) - start[t, lv]
            else:  # word and riddle questions do not come in levels
                start[t, lv], size[t, lv] = shared, len(vocab.WORD_QUESTIONS[kind])
    shares = np.zeros((len(MODES), len(TYPES)))
    for m, (*_, types) in enumerate(vocab.GAME_MODES.values()):
        for kind, share in types.items():
            shares[m, TYPES.index(kind)] = share
    text, answer, wrong1, wrong2 = (np.array(column, dtype=object) for column in zip(*rows))
    return Bank(
        text=text,
        answer=answer,
        wrong=np.stack([wrong1, wrong2], axis=1),
        start=start,
        size=size,
        type_cdf=np.cumsum(shares / shares.sum(axis=1, keepdims=True), axis=1),
        ease=np.array([vocab.QUESTION_EASE[kind] for kind in TYPES]),
    )


def draw_types(rng: np.random.Generator, modes: np.ndarray) -> np.ndarray:
    """A question type (index into ``TYPES``) per question, by the shares of its session's mode."""
    cdf = bank().type_cdf[modes]
    u = rng.random(len(modes))
    return np.minimum((u[:, None] >= cdf).sum(axis=1), len(TYPES) - 1)


def rank_within(keys: np.ndarray) -> np.ndarray:
    """Per row, how many earlier rows share its key (0 for the first)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0)) if len(keys) else np.zeros(0, dtype=np.int64)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - group_start
    return rank


def pick_questions(rng: np.random.Generator, game: np.ndarray, modes: np.ndarray, levels: np.ndarray,
                   n_games: int) -> tuple[np.ndarray, np.ndarray]:
    """For question slots of games (``game``: the slot's game; ``modes``/``levels``: per game),
    a question type and a bank index each; no game asks a question twice."""
    b = bank()
    kind = draw_types(rng, modes[game])
    offset = rng.integers(0, 2**31, size=n_games)
    stride = STRIDES[rng.integers(0, len(STRIDES), size=n_games)]
    rank = rank_within(game * len(TYPES) + kind)
    level = levels[game]
    pool = b.size[kind, level]
    return kind, b.start[kind, level] + (offset[game] + 7 * kind + rank * stride[game]) % pool
