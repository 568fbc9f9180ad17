"""The people and devices of a generated Cheeko fleet.

A :class:`Population` holds, as numpy arrays, everything the daily event
generator needs to know about parents, kids and devices (time zone,
engagement, signup and churn, skills). :func:`population_tables` turns it into
the rows of the user, kid, device and agent tables.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.randomness import hex_ids, pick, uuids

TZ_NAMES = [name for name, _ in vocab.TIMEZONES]
SUBJECT_NAMES = list(vocab.SUBJECTS)
ADMIN_USER_IDS = (1, 2, 3)
FIRST_PARENT_ID = 101
ESPRESSIF_OUIS = ((0x24, 0x0A, 0xC4), (0x84, 0xF7, 0x03), (0xEC, 0xDA, 0x3B), (0x34, 0x85, 0x18))


@dataclass
class Population:
    """Parents, kids and devices; index i of a ``device_*`` array is device i."""

    parent_id: np.ndarray
    parent_tz: np.ndarray  # index into TZ_NAMES, -1 = not set (UTC)
    parent_lang: np.ndarray
    parent_first: np.ndarray
    parent_last: np.ndarray
    parent_created: np.ndarray  # epoch seconds
    kid_id: np.ndarray
    kid_parent: np.ndarray  # index into parent arrays
    kid_name: np.ndarray
    kid_birth: np.ndarray  # date ordinal
    kid_tz: np.ndarray  # index into TZ_NAMES when the kid profile sets a zone, -1 = not set
    kid_skill: np.ndarray  # (kids, subjects) base accuracy
    device_id: np.ndarray
    device_mac: np.ndarray
    device_parent: np.ndarray
    device_kid: np.ndarray  # index into kid arrays, -1 = none
    device_signup: np.ndarray  # epoch seconds
    device_churn_day: np.ndarray  # date ordinal after which it stays silent
    device_engagement: np.ndarray
    device_agent_id: np.ndarray
    device_llm: np.ndarray  # index into the LLM list, -1 = none
    device_board: np.ndarray
    device_has_cards: np.ndarray

    @property
    def n_devices(self) -> int:
        return len(self.device_id)

    def device_tz(self) -> np.ndarray:
        """The zone a device's child lives by: the kid's, else the owner's; -1 = UTC (metrics.md)."""
        kid_zone = np.where(self.device_kid >= 0, self.kid_tz[np.maximum(self.device_kid, 0)], -1)
        return np.where(kid_zone >= 0, kid_zone, self.parent_tz[self.device_parent])

    def extend(self, other: Population) -> Population:
        """This population followed by ``other`` (whose indices are local to it)."""
        shifted = dict(
            kid_parent=other.kid_parent + len(self.parent_id),
            device_parent=other.device_parent + len(self.parent_id),
            device_kid=np.where(other.device_kid >= 0, other.device_kid + len(self.kid_id), -1),
        )
        return Population(**{
            f.name: np.concatenate([getattr(self, f.name), shifted.get(f.name, getattr(other, f.name))])
            for f in fields(self)
        })


def _macs(rng: np.random.Generator, n: int, taken: set[str]) -> np.ndarray:
    out: list[str] = []
    while len(out) < n:
        oui = ESPRESSIF_OUIS[int(rng.integers(len(ESPRESSIF_OUIS)))]
        tail = rng.integers(0, 256, size=3)
        mac = ":".join(f"{b:02x}" for b in (*oui, *tail))
        if mac not in taken:
            taken.add(mac)
            out.append(mac)
    return np.array(out, dtype=object)


def build_population(
    rng: np.random.Generator,
    n_devices: int,
    *,
    signup_from: int,
    signup_to: int,
    existing_share: float,
    first_parent_id: int,
    first_kid_id: int,
    n_llms: int,
    llm_weights: list[float],
    taken_macs: set[str],
) -> Population:
    """``n_devices`` devices with their parents and kids.

    ``existing_share`` of them signed up in the 240 days before
    ``signup_from`` (epoch seconds); the rest sign up evenly between
    ``signup_from`` and ``signup_to``, so the fleet grows over the window.
    """
    n_parents = max(1, round(n_devices / 1.25)) if n_devices else 0
    device_parent = np.concatenate([np.arange(min(n_parents, n_devices)),
                                    rng.integers(0, max(n_parents, 1), size=max(0, n_devices - n_parents))])
    existing = rng.random(n_devices) < existing_share
    signup = np.where(
        existing,
        signup_from - rng.integers(86400, 240 * 86400, size=n_devices),
        rng.integers(signup_from, max(signup_to, signup_from + 1), size=n_devices),
    )
    parent_created = np.full(n_parents, np.iinfo(np.int64).max)
    np.minimum.at(parent_created, device_parent, signup - rng.integers(600, 3 * 86400, size=n_devices))
    parent_created = np.where(parent_created == np.iinfo(np.int64).max, signup_from, parent_created)

    kids_per_parent = 1 + (rng.random(n_parents) < 0.3)
    kid_parent = np.repeat(np.arange(n_parents), kids_per_parent)
    n_kids = len(kid_parent)
    age_days = rng.integers(4 * 365, 11 * 365, size=n_kids)
    kid_birth = (dt.date(1970, 1, 1).toordinal() + signup_from // 86400) - age_days

    # A device belongs to one of its parent's kids (or, now and then, none yet).
    first_kid_of_parent = np.concatenate([[0], np.cumsum(kids_per_parent)[:-1]])
    kid_choice = first_kid_of_parent[device_parent] + (
        rng.integers(0, 2, size=n_devices) % kids_per_parent[device_parent]
    )
    device_kid = np.where(rng.random(n_devices) < 0.92, kid_choice, -1)

    churn_after = rng.exponential(45, size=n_devices).astype(np.int64) + 7
    churns = rng.random(n_devices) < 0.22
    signup_day = dt.date(1970, 1, 1).toordinal() + signup // 86400
    device_churn_day = np.where(churns, signup_day + churn_after, np.iinfo(np.int32).max)

    tz_weights = [w for _, w in vocab.TIMEZONES]
    parent_tz = rng.choice(len(TZ_NAMES), size=n_parents, p=np.array(tz_weights) / sum(tz_weights))
    parent_tz = np.where(rng.random(n_parents) < 0.04, -1, parent_tz)
    lang_weights = [w for *_, w in vocab.LANGUAGES]
    parent_lang = pick(rng, [code for code, *_ in vocab.LANGUAGES], n_parents, lang_weights)

    llm = rng.choice(n_llms, size=n_devices, p=np.asarray(llm_weights) / np.sum(llm_weights))
    # A third of kid profiles set a zone: mostly the parent's, sometimes another
    # (a child who lives with grandparents abroad), so kid-before-parent matters.
    own_zone = rng.random(n_kids) < 0.3
    elsewhere = rng.random(n_kids) < 0.25
    other_zone = rng.integers(0, len(TZ_NAMES), size=n_kids)
    parent_of_kid = parent_tz[kid_parent]
    kid_tz = np.where(own_zone, np.where(elsewhere | (parent_of_kid < 0), other_zone, parent_of_kid), -1)
    return Population(
        parent_id=np.arange(first_parent_id, first_parent_id + n_parents),
        parent_tz=parent_tz,
        parent_lang=parent_lang,
        parent_first=pick(rng, vocab.PARENT_NAMES, n_parents),
        parent_last=pick(rng, vocab.SURNAMES, n_parents),
        parent_created=parent_created,
        kid_id=np.arange(first_kid_id, first_kid_id + n_kids),
        kid_parent=kid_parent,
        kid_name=pick(rng, vocab.FIRST_NAMES, n_kids),
        kid_birth=kid_birth,
        kid_tz=kid_tz,
        kid_skill=rng.uniform(0.45, 0.9, size=(n_kids, len(SUBJECT_NAMES))),
        device_id=uuids(rng, n_devices),
        device_mac=_macs(rng, n_devices, taken_macs),
        device_parent=device_parent,
        device_kid=device_kid,
        device_signup=signup,
        device_churn_day=device_churn_day,
        device_engagement=rng.beta(2.0, 2.2, size=n_devices),
        device_agent_id=uuids(rng, n_devices),
        device_llm=np.where(rng.random(n_devices) < 0.08, -1, llm),
        device_board=pick(rng, vocab.BOARDS, n_devices, [0.3, 0.5, 0.2]),
        device_has_cards=rng.random(n_devices) < 0.6,
    )


def ts(seconds: np.ndarray) -> pl.Series:
    """Epoch seconds as a UTC timestamp column."""
    return pl.Series(np.asarray(seconds, dtype=np.int64) * 1_000_000).cast(pl.Datetime("us", "UTC"))


def dates(ordinals: np.ndarray) -> pl.Series:
    """Date ordinals (``date.toordinal()``) as a date column."""
    epoch = dt.date(1970, 1, 1).toordinal()
    return pl.Series(np.asarray(ordinals, dtype=np.int64) - epoch).cast(pl.Int32).cast(pl.Date)


def _tz_column(idx: np.ndarray) -> list[str | None]:
    return [TZ_NAMES[i] if i >= 0 else None for i in idx]


def population_tables(
    pop: Population,
    rng: np.random.Generator,
    *,
    llm_ids: list[str],
    voice_ids: list[str],
    now: int,
) -> dict[str, pl.DataFrame]:
    """Rows for sys_user, parent_profile, kid_profile, ai_agent, ai_device and
    the per-user token, quota and pairing tables. ``now`` caps every timestamp."""
    n_par, n_kid, n_dev = len(pop.parent_id), len(pop.kid_id), pop.n_devices
    first = pop.parent_first.astype(str)
    last = pop.parent_last.astype(str)
    handle = np.char.lower(np.char.add(np.char.add(first, "."), last)).astype(object)
    handle = np.array([f"{h}{pid}" for h, pid in zip(handle, pop.parent_id)], dtype=object)
    email = np.array([f"{h}@example.com" for h in handle], dtype=object)
    phone = np.array([f"+91{n:010d}" for n in rng.integers(7_000_000_000, 9_999_999_999, size=n_par)], dtype=object)
    last_login = np.minimum(pop.parent_created + rng.integers(0, 60 * 86400, size=n_par), now)
    sys_user = pl.DataFrame({
        "id": pop.parent_id,
        "firebase_uid": hex_ids(rng, n_par, "fb_", 28),
        "username": handle,
        "password": hex_ids(rng, n_par, "$2b$10$", 40),
        "email": email,
        "phone": phone,
        "nickname": first.astype(object),
        "avatar": [f"https://cdn.cheeko.ai/avatars/{pid}.png" for pid in pop.parent_id],
        "gender": rng.integers(0, 3, size=n_par),
        "status": np.where(rng.random(n_par) < 0.97, 1, 0),
        "role": ["user"] * n_par,
        "last_login_at": ts(last_login),
        "created_at": ts(pop.parent_created),
        "updated_at": ts(np.minimum(pop.parent_created + rng.integers(0, 86400, size=n_par), now)),
    })
    openclaw = rng.random(n_par) < 0.1
    parent_profile = pl.DataFrame({
        "id": pop.parent_id,
        "user_id": pop.parent_id,
        "email": email,
        "phone_number": phone,
        "display_name": [f"{a} {b}" for a, b in zip(first, last)],
        "avatar_url": [None] * n_par,
        "timezone": _tz_column(pop.parent_tz),
        "language": pop.parent_lang,
        "email_notifications": rng.random(n_par) < 0.85,
        "push_notifications": rng.random(n_par) < 0.9,
        "weekly_report": rng.random(n_par) < 0.7,
        "onboarding_completed": rng.random(n_par) < 0.93,
        "terms_accepted_at": ts(pop.parent_created + 120),
        "terms_version": ["2025-06"] * n_par,
        "openclaw_url": [f"https://claw{i}.openclaw.example" if o else None for i, o in zip(pop.parent_id, openclaw)],
        "openclaw_token": [t if o else None for t, o in zip(hex_ids(rng, n_par, "oc_tok_", 32), openclaw)],
        "created_at": ts(pop.parent_created),
        "updated_at": ts(pop.parent_created + 300),
    })
    kid_created = pop.parent_created[pop.kid_parent] + 900
    kid_interests = [
        "{" + ",".join(pick(rng, vocab.INTERESTS, int(k))) + "}" for k in rng.integers(0, 4, size=n_kid)
    ]
    kid_profile = pl.DataFrame({
        "id": pop.kid_id,
        "user_id": pop.parent_id[pop.kid_parent],
        "name": [f"{a} {b}" for a, b in zip(pop.kid_name, last[pop.kid_parent])],
        "nickname": pop.kid_name,
        "avatar_url": [None] * n_kid,
        "birth_date": dates(pop.kid_birth),
        "gender": pick(rng, ["girl", "boy", None], n_kid, [0.48, 0.48, 0.04]).tolist(),
        "grade": pick(rng, vocab.GRADES, n_kid),
        "school": pick(rng, vocab.SCHOOLS + [None], n_kid).tolist(),
        "interests": kid_interests,
        "language": pop.parent_lang[pop.kid_parent],
        "timezone": _tz_column(pop.kid_tz),
        "preferences": [json.dumps({"bedtime": f"{h}:30", "voice_speed": "normal"}) for h in rng.integers(19, 22, size=n_kid)],
        "created_at": ts(kid_created),
        "updated_at": ts(kid_created + 60),
    })
    owner = pop.parent_id[pop.device_parent]
    ai_agent = pl.DataFrame({
        "id": pop.device_agent_id,
        "user_id": owner,
        "agent_code": ["AGT-" + agent[:8].upper() for agent in pop.device_agent_id],
        "agent_name": [f"Cheeko for {pop.kid_name[k]}" if k >= 0 else "Cheeko" for k in pop.device_kid],
        "llm_model_id": [llm_ids[i] if i >= 0 else None for i in pop.device_llm],
        "tts_voice_id": pick(rng, voice_ids, n_dev),
        "chat_history_conf": rng.choice([0, 5, 10], size=n_dev),
        "system_prompt": ["You are Cheeko, a kind and playful companion for a young child."] * n_dev,
        "summary_memory": [None] * n_dev,
        "lang_code": pop.parent_lang[pop.device_parent],
        "language": [dict((c, n) for c, n, _ in vocab.LANGUAGES)[c] for c in pop.parent_lang[pop.device_parent]],
        "sort": np.zeros(n_dev, dtype=np.int64),
        "status": np.ones(n_dev, dtype=np.int64),
        "creator": owner,
        "created_at": ts(pop.device_signup),
        "updated_at": ts(pop.device_signup + 60),
    })
    device_openclaw = rng.random(n_dev) < 0.05
    ai_device = pl.DataFrame({
        "id": pop.device_id,
        "user_id": owner,
        "mac_address": pop.device_mac,
        "last_connected_at": ts(pop.device_signup),  # moved to the last active day later
        "auto_update": np.where(rng.random(n_dev) < 0.9, 1, 0),
        "board": pop.device_board,
        "alias": [f"{pop.kid_name[k]}'s Cheeko" if k >= 0 else "Cheeko" for k in pop.device_kid],
        "agent_id": pop.device_agent_id,
        "kid_id": [int(pop.kid_id[k]) if k >= 0 else None for k in pop.device_kid],
        "mode": pick(rng, ["conversation", "story", "learning"], n_dev, [0.8, 0.1, 0.1]),
        "device_mode": pick(rng, ["auto", "manual"], n_dev, [0.85, 0.15]),
        "app_version": pick(rng, vocab.APP_VERSIONS, n_dev),
        "sort": np.zeros(n_dev, dtype=np.int64),
        "creator": owner,
        "create_date": ts(pop.device_signup),
        "updater": owner,
        "update_date": ts(pop.device_signup),
        "openclaw_url": ["https://claw.openclaw.example" if o else None for o in device_openclaw],
        "openclaw_token": [t if o else None for t, o in zip(hex_ids(rng, n_dev, "oc_dev_", 32), device_openclaw)],
    }).with_columns(pl.col("kid_id").cast(pl.Int64))

    n_tok = n_par * 2
    tok_owner = np.repeat(pop.parent_id, 2)
    # Sessions start after the account exists and before the data ends.
    tok_created = np.clip(np.repeat(last_login, 2) - rng.integers(0, 30 * 86400, size=n_tok),
                          np.repeat(pop.parent_created, 2), now)
    sys_user_token = pl.DataFrame({
        "user_id": tok_owner,
        "token": hex_ids(rng, n_tok, "sess_", 48),
        "expire_date": ts(tok_created + 30 * 86400),
        "created_at": ts(tok_created),
        "updated_at": ts(tok_created),
    })
    n_pair = max(1, n_par // 20)
    pair_created = np.minimum(pop.parent_created[:n_pair] + 3600, now)
    openclaw_pair_tokens = pl.DataFrame({
        "user_id": pop.parent_id[:n_pair],
        "token": hex_ids(rng, n_pair, "P", 12),
        "openclaw_url": ["https://claw.openclaw.example"] * n_pair,
        "paired": rng.random(n_pair) < 0.7,
        "expires_at": ts(pair_created + 600),
        "created_at": ts(pair_created),
        "updated_at": ts(pair_created),
    })
    return {
        "sys_user": sys_user,
        "parent_profile": parent_profile,
        "kid_profile": kid_profile,
        "ai_agent": ai_agent,
        "ai_device": ai_device,
        "sys_user_token": sys_user_token,
        "openclaw_pair_tokens": openclaw_pair_tokens,
    }
