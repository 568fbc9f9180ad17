"""Device memory files: markdown-like notes with facts planted for retrieval tests.

Each device with a kid gets a ``personality`` file (no date) whose
"Favourites", "Family and friends", "Feelings" and "Dreams" sections carry
one planted fact per line, and ``daily`` files on some of the days the
child chatted. Every planted fact is recorded with its file and line so a
search test can ask a paraphrased question and check what comes back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.fleet import Population
from pipelines.generator.randomness import pick, stream, uuids

US = 1_000_000
SECTION_OF_FACT = {
    "favourite_animal": "Favourites",
    "favourite_colour": "Favourites",
    "favourite_food": "Favourites",
    "pet": "Family and friends",
    "best_friend": "Family and friends",
    "fear": "Feelings",
    "dream_job": "Dreams",
}


@dataclass(frozen=True)
class PlantedFact:
    """One fact written into a memory file, and a question that should find it."""

    mac_id: str
    kid_id: int
    fact: str
    value: str
    question: str
    file_type: str
    file_date: str | None
    line: int  # 1-based line of the fact in the file
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def personality_file(name: str, age: int, grade: str, language: str, interests: list[str], facts: dict[str, str]) -> tuple[str, dict[str, int]]:
    """The text of a personality file and the 1-based line of each fact."""
    lines = [
        f"# Personality notes: {name}",
        "",
        "## About",
        f"{name} is {age} years old, in {grade}, and mostly speaks {language}.",
        f"Interests: {', '.join(interests) if interests else 'still discovering'}.",
        "",
    ]
    where: dict[str, int] = {}
    for section in ("Favourites", "Family and friends", "Feelings", "Dreams"):
        lines.append(f"## {section}")
        for kind, values, template, _ in vocab.FACTS:
            if SECTION_OF_FACT[kind] == section and kind in facts:
                where[kind] = len(lines) + 1
                lines.append(template.format(value=facts[kind], name=name))
        lines.append("")
    lines += ["## How to talk with them", f"Short sentences, lots of encouragement; {name} likes being asked follow-up questions."]
    return "\n".join(lines) + "\n", where


def daily_file(rng: np.random.Generator, name: str, day: dt.date, sessions: int) -> str:
    """A day's notes: conversations, games, mood, follow-ups."""
    topics = pick(rng, vocab.INTERESTS, 2)
    lines = [
        f"# Daily memory {day.isoformat()}",
        "",
        "## Conversations",
        f"{name} had {sessions} conversation{'s' if sessions != 1 else ''} today, mostly about {topics[0]} and {topics[1]}.",
        f"Asked: \"{pick(rng, vocab.CHAT_USER, 1)[0]}\"",
        "",
        "## Mood",
        str(pick(rng, vocab.MOODS, 1)[0]),
        "",
        "## Follow-ups",
        f"- {pick(rng, vocab.FOLLOW_UPS, 1)[0]}",
    ]
    if rng.random() < 0.4:
        lines += [f"- {pick(rng, vocab.FOLLOW_UPS, 1)[0]}"]
    return "\n".join(lines) + "\n"


def personality_files(seed: int, rng: np.random.Generator, pop: Population, devices: np.ndarray,
                      horizon_s: int) -> tuple[pl.DataFrame, list[PlantedFact]]:
    """Personality files (and their planted facts) for ``devices`` that have a kid.

    Facts belong to the child, not the device: they come from the child's own
    stream, so two devices of one child (or a later append) tell the same story.
    """
    rows, facts = [], []
    ids = uuids(rng, len(devices))
    for dev, file_id in zip(devices, ids):
        kid = pop.device_kid[dev]
        if kid < 0:
            continue
        name = str(pop.kid_name[kid])
        child = stream(seed, "facts", int(pop.kid_id[kid]))
        chosen = {kind: str(values[int(child.integers(len(values)))]) for kind, values, _, _ in vocab.FACTS}
        age = int((pop.device_signup[dev] // 86400 + dt.date(1970, 1, 1).toordinal() - pop.kid_birth[kid]) // 365)
        language = dict((c, n) for c, n, _ in vocab.LANGUAGES)[str(pop.parent_lang[pop.kid_parent[kid]])]
        grade = str(vocab.GRADES[int(child.integers(len(vocab.GRADES)))])
        interests = [vocab.INTERESTS[int(i)] for i in child.choice(len(vocab.INTERESTS), size=2, replace=False)]
        text, where = personality_file(name, age, grade, language, interests, chosen)
        mac = str(pop.device_mac[dev])
        updated = min(int(pop.device_signup[dev]) + 86400, horizon_s)
        rows.append((file_id, mac, "personality", None, text, updated * US))
        lines = text.split("\n")
        for kind, _, _, question in vocab.FACTS:
            facts.append(PlantedFact(mac, int(pop.kid_id[kid]), kind, chosen[kind], question, "personality", None,
                                     where[kind], lines[where[kind] - 1]))
    return _frame(rows), facts


def daily_files(rng: np.random.Generator, pop: Population, day: dt.date, chat_devices: np.ndarray,
                sessions: np.ndarray, midnight_us: np.ndarray) -> pl.DataFrame:
    """Daily notes for about a third of the devices that chatted on ``day``."""
    keep = (pop.device_kid[chat_devices] >= 0) & (rng.random(len(chat_devices)) < 0.3)
    devs, n_sess = chat_devices[keep], sessions[keep]
    ids = uuids(rng, len(devs))
    rows = [
        (file_id, str(pop.device_mac[d]), "daily", day, daily_file(rng, str(pop.kid_name[pop.device_kid[d]]), day, int(n)),
         int(midnight_us[d] + 23 * 3600 * US))
        for file_id, d, n in zip(ids, devs, n_sess)
    ]
    return _frame(rows)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    schema = {"id": pl.String, "mac_id": pl.String, "file_type": pl.String, "file_date": pl.Date,
              "content": pl.String, "updated_at": pl.Int64}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("updated_at").cast(pl.Datetime("us", "UTC")))
