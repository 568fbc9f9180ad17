"""The fleet-independent Cheeko rows: models, voices, templates, content,
RFID cards and questions, system dictionaries, OTA releases, report config."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.generator import vocab
from pipelines.generator.fleet import ts
from pipelines.generator.randomness import hex_ids, pick, uuids

# (provider code, name, model type, [(model code, name, input $/M, output $/M)])
PROVIDERS = [
    ("openai", "OpenAI", "LLM", [("gpt-4o-mini", "GPT-4o mini", 0.15, 0.60), ("gpt-4.1-mini", "GPT-4.1 mini", 0.40, 1.60)]),
    ("google", "Google Gemini", "LLM", [("gemini-2.0-flash", "Gemini 2.0 Flash", 0.10, 0.40)]),
    ("groq", "Groq", "LLM", [("llama-3.1-8b-instant", "Llama 3.1 8B", 0.05, 0.08)]),
    ("deepgram", "Deepgram", "ASR", [("nova-3", "Nova 3", None, None)]),
    ("silero", "Silero", "VAD", [("silero-vad", "Silero VAD", None, None)]),
    ("elevenlabs", "ElevenLabs", "TTS", [("eleven_flash_v2_5", "Flash v2.5", None, None)]),
    ("mem0", "Mem0", "Memory", [("mem0-local", "Mem0 local", None, None)]),
    ("openai-intent", "OpenAI intent", "Intent", [("function_call", "Function calling", None, None)]),
]
LLM_WEIGHTS = [0.45, 0.2, 0.25, 0.1]  # gpt-4o-mini, gpt-4.1-mini, gemini, llama
RETIRED_CONTENT = [("story", "Diwali Lights Special 2024", 420), ("music", "Holiday Jingles 2024", 150),
                   ("story", "Summer Camp Tales", 540), ("music", "New Year Countdown Song", 95),
                   ("story", "The Monsoon Special", 380), ("music", "Back to School Beat", 130)]


@dataclass
class Catalogue:
    """Catalogue rows plus the lookups the event generator draws from."""

    tables: dict[str, pl.DataFrame]
    llm_ids: list[str]
    model_ids: dict[str, str]  # model type -> a default model of that type
    voice_ids: list[str]
    story_ids: np.ndarray
    story_seconds: np.ndarray
    music_ids: np.ndarray
    music_seconds: np.ndarray
    story_library_ids: np.ndarray  # content_library id of each story (analytics_media_playback.content_id)
    music_library_ids: np.ndarray  # content_library id of each song
    card_uids: np.ndarray
    card_resolved_type: np.ndarray  # what each card points at: question, content_pack or question_pack
    series_count: int  # rfid_series rows, ids 1..n, each covering UIDs 05XX0000000000..05XX00000000FF


def build_catalogue(rng: np.random.Generator, created: int) -> Catalogue:
    """All catalogue rows, created around epoch second ``created``."""
    t: dict[str, pl.DataFrame] = {}
    provider_ids = uuids(rng, len(PROVIDERS))
    t["ai_model_provider"] = pl.DataFrame({
        "id": provider_ids,
        "provider_code": [p[0] for p in PROVIDERS],
        "name": [p[1] for p in PROVIDERS],
        "model_type": [p[2] for p in PROVIDERS],
        "api_base_url": [f"https://api.{p[0]}.example/v1" for p in PROVIDERS],
        "fields": [json.dumps([{"key": "api_key", "type": "secret"}])] * len(PROVIDERS),
        "sort": list(range(len(PROVIDERS))),
        "created_at": ts(np.full(len(PROVIDERS), created)),
        "updated_at": ts(np.full(len(PROVIDERS), created)),
    })
    models = [(pid, p[2], *m) for pid, p in zip(provider_ids, PROVIDERS) for m in p[3]]
    model_ids = uuids(rng, len(models))
    api_keys = hex_ids(rng, len(models), "sk-live-", 40)
    t["ai_model_config"] = pl.DataFrame({
        "id": model_ids,
        "provider_id": [m[0] for m in models],
        "model_type": [m[1] for m in models],
        "model_code": [m[2] for m in models],
        "model_name": [m[3] for m in models],
        "is_default": [m[2] in ("gpt-4o-mini", "nova-3", "silero-vad", "eleven_flash_v2_5", "mem0-local", "function_call") for m in models],
        "is_enabled": [True] * len(models),
        "input_price_per_million": pl.Series([m[4] for m in models], dtype=pl.Decimal(12, 6)),
        "output_price_per_million": pl.Series([m[5] for m in models], dtype=pl.Decimal(12, 6)),
        "cached_input_price_per_million": pl.Series([m[4] / 4 if m[4] else None for m in models], dtype=pl.Decimal(12, 6)),
        "config_json": [json.dumps({"api_key": key, "timeout_s": 30}) for key in api_keys],
        "sort": list(range(len(models))),
        "created_at": ts(np.full(len(models), created)),
        "updated_at": ts(np.full(len(models), created)),
    })
    by_type = {}
    for mid, m in zip(model_ids, models):
        by_type.setdefault(m[1], mid)
    llm_ids = [mid for mid, m in zip(model_ids, models) if m[1] == "LLM"]

    voices = ["Cheerful Chipmunk", "Gentle Owl", "Story Bear", "Sunny", "Didi", "Captain", "Luna", "Bolt"]
    voice_ids = uuids(rng, len(voices))
    t["ai_tts_voice"] = pl.DataFrame({
        "id": voice_ids,
        "tts_model_id": [by_type["TTS"]] * len(voices),
        "name": voices,
        "tts_voice": [f"voice_{i:02d}" for i in range(len(voices))],
        "languages": pick(rng, ["en", "en,hi", "hi", "es", "de"], len(voices)),
        "gender": pick(rng, ["female", "male", "neutral"], len(voices)),
        "sort": list(range(len(voices))),
        "created_at": ts(np.full(len(voices), created)),
        "updated_at": ts(np.full(len(voices), created)),
    })
    templates = ["Playful buddy", "Bedtime storyteller", "Math coach", "Language tutor"]
    t["ai_agent_template"] = pl.DataFrame({
        "id": uuids(rng, len(templates)),
        "agent_code": [f"TPL{i}" for i in range(len(templates))],
        "agent_name": templates,
        "asr_model_id": [by_type["ASR"]] * len(templates),
        "vad_model_id": [by_type["VAD"]] * len(templates),
        "llm_model_id": [llm_ids[0]] * len(templates),
        "tts_model_id": [by_type["TTS"]] * len(templates),
        "tts_voice_id": list(voice_ids[: len(templates)]),
        "mem_model_id": [by_type["Memory"]] * len(templates),
        "intent_model_id": [by_type["Intent"]] * len(templates),
        "system_prompt": [f"You are Cheeko, a {name.lower()} for a young child." for name in templates],
        "sort": list(range(len(templates))),
        "created_at": ts(np.full(len(templates), created)),
        "updated_at": ts(np.full(len(templates), created)),
    })

    n_story, n_music = len(vocab.STORY_TITLES) * 4, len(vocab.SONG_TITLES) * 3
    story_ids, music_ids = uuids(rng, n_story), uuids(rng, n_music)
    story_seconds = rng.integers(180, 900, size=n_story)
    music_seconds = rng.integers(60, 240, size=n_music)
    story_titles = [f"{vocab.STORY_TITLES[i % len(vocab.STORY_TITLES)]}" + (f" (Part {i // len(vocab.STORY_TITLES) + 1})" if i >= len(vocab.STORY_TITLES) else "") for i in range(n_story)]
    music_titles = [f"{vocab.SONG_TITLES[i % len(vocab.SONG_TITLES)]}" + (f" (v{i // len(vocab.SONG_TITLES) + 1})" if i >= len(vocab.SONG_TITLES) else "") for i in range(n_music)]
    t["ai_story"] = pl.DataFrame({
        "id": story_ids, "title": story_titles, "author": pick(rng, ["Cheeko Studio", "R. Menon", "A. Park"], n_story),
        "category": pick(rng, vocab.STORY_CATEGORIES, n_story), "language": pick(rng, ["English", "Hindi"], n_story, [0.8, 0.2]),
        "age_group": pick(rng, ["3-5", "5-7", "7-10"], n_story), "duration": story_seconds,
        "content": [f"{title}. Once upon a time..." for title in story_titles],
        "audio_url": [f"https://cdn.cheeko.ai/stories/{i}.mp3" for i in story_ids], "cover_url": [None] * n_story,
        "sort": list(range(n_story)), "status": np.ones(n_story, dtype=np.int64), "creator": np.full(n_story, 1),
        "created_at": ts(np.full(n_story, created)), "updated_at": ts(np.full(n_story, created)),
    })
    t["ai_music"] = pl.DataFrame({
        "id": music_ids, "title": music_titles, "artist": pick(rng, ["Cheeko Band", "Little Voices"], n_music),
        "album": [None] * n_music, "category": pick(rng, vocab.MUSIC_CATEGORIES, n_music),
        "language": pick(rng, ["English", "Hindi"], n_music, [0.7, 0.3]), "duration": music_seconds,
        "file_url": [f"https://cdn.cheeko.ai/music/{i}.mp3" for i in music_ids], "cover_url": [None] * n_music,
        "lyrics": [None] * n_music, "sort": list(range(n_music)), "status": np.ones(n_music, dtype=np.int64),
        "creator": np.full(n_music, 1), "created_at": ts(np.full(n_music, created)), "updated_at": ts(np.full(n_music, created)),
    })
    books = [(s, g) for s in vocab.SUBJECTS for g in ("Grade 1", "Grade 2")]
    book_ids = uuids(rng, len(books))
    t["ai_textbook"] = pl.DataFrame({
        "id": book_ids, "title": [f"{s.replace('_', ' ').title()} for {g}" for s, g in books],
        "subject": [s for s, _ in books], "grade": [g for _, g in books], "language": ["English"] * len(books),
        "publisher": ["Cheeko Learning"] * len(books), "description": [None] * len(books),
        "sort": list(range(len(books))), "status": np.ones(len(books), dtype=np.int64), "creator": np.full(len(books), 1),
        "created_at": ts(np.full(len(books), created)), "updated_at": ts(np.full(len(books), created)),
    })
    chapters = [(b, c) for b in book_ids for c in range(1, 7)]
    chapter_ids = uuids(rng, len(chapters))
    t["ai_textbook_chapter"] = pl.DataFrame({
        "id": chapter_ids, "textbook_id": [b for b, _ in chapters], "chapter_number": [c for _, c in chapters],
        "title": [f"Chapter {c}" for _, c in chapters], "content": [None] * len(chapters),
        "audio_url": [f"https://cdn.cheeko.ai/textbooks/{i}.mp3" for i in chapter_ids],
        "duration": rng.integers(120, 600, size=len(chapters)), "sort": [c for _, c in chapters],
        "created_at": ts(np.full(len(chapters), created)), "updated_at": ts(np.full(len(chapters), created)),
    })
    # The library the device plays from: every story and song (ids 1.., stories first), then a few retired
    # seasonal items (status 0) that nothing plays any more; an append deletes one of those now and then.
    lib_items = ([("story", str(i), t_, int(s)) for i, t_, s in zip(story_ids, story_titles, story_seconds)]
                 + [("music", str(i), t_, int(s)) for i, t_, s in zip(music_ids, music_titles, music_seconds)])
    n_active = len(lib_items)
    lib_items += [(kind, None, f"{title} (retired)", int(seconds)) for kind, title, seconds in RETIRED_CONTENT]
    n_lib = len(lib_items)
    t["content_library"] = pl.DataFrame({
        "id": np.arange(1, n_lib + 1), "content_type": [c for c, *_ in lib_items], "title": [x for _, _, x, _ in lib_items],
        "description": [None] * n_lib, "url": [f"https://cdn.cheeko.ai/{c}/{i or k}.mp3" for k, (c, i, *_) in enumerate(lib_items)],
        "thumbnail_url": [None] * n_lib, "duration_seconds": [s for *_, s in lib_items],
        "category": pick(rng, vocab.STORY_CATEGORIES + vocab.MUSIC_CATEGORIES, n_lib),
        "tags": [json.dumps(list(pick(rng, vocab.INTERESTS, 2))) for _ in range(n_lib)],
        "age_min": np.full(n_lib, 3), "age_max": np.full(n_lib, 10), "language": ["en"] * n_lib,
        "metadata": [json.dumps({"source_id": i} if i else {"retired": True}) for _, i, _, _ in lib_items],
        "status": np.where(np.arange(n_lib) < n_active, 1, 0),
        "created_at": ts(np.full(n_lib, created)), "updated_at": ts(np.full(n_lib, created)),
    })

    # RFID questions (what a question card asks): eight per (subject, topic).
    qrows = [(s, tp, k) for s, topics in vocab.SUBJECTS.items() for tp in topics for k in range(8)]
    q_ids = np.arange(1, len(qrows) + 1)
    q_codes = np.array([f"{s}.{tp}.{k:02d}" for s, tp, k in qrows], dtype=object)
    t["rfid_question"] = pl.DataFrame({
        "id": q_ids, "code": q_codes, "title": [f"{tp.replace('_', ' ').title()} question {k + 1}" for _, tp, k in qrows],
        "prompt_text": [f"Ask the child a {tp} question at level {k % 3 + 1}." for _, tp, k in qrows],
        "system_prompt_override": [None] * len(qrows), "allow_caching": [True] * len(qrows),
        "cached_audio_url": [None] * len(qrows), "language": ["en"] * len(qrows), "category": [s for s, _, _ in qrows],
        "difficulty": [k % 3 + 1 for *_, k in qrows], "active": [True] * len(qrows), "creator": np.full(len(qrows), 1),
        "create_date": ts(np.full(len(qrows), created)), "update_date": ts(np.full(len(qrows), created)),
    })
    subjects = list(vocab.SUBJECTS)
    t["rfid_question_pack"] = pl.DataFrame({
        "id": np.arange(1, len(subjects) + 1), "pack_code": [f"QP-{s.upper()}" for s in subjects],
        "name": [f"{s.replace('_', ' ').title()} questions" for s in subjects], "description": [None] * len(subjects),
        "question_ids": [json.dumps([int(q) for q in q_ids[[r[0] == s for r in qrows]][:20]]) for s in subjects],
        "language": ["en"] * len(subjects), "category": subjects, "version": np.ones(len(subjects), dtype=np.int64),
        "status": ["published"] * len(subjects), "active": [True] * len(subjects), "creator": np.full(len(subjects), 1),
        "create_date": ts(np.full(len(subjects), created)), "update_date": ts(np.full(len(subjects), created)),
    })
    packs = ["Animal Friends", "Space Explorers", "Number Fun", "Rhyme Time", "Festival Stories"]
    t["rfid_pack"] = pl.DataFrame({
        "id": np.arange(1, len(packs) + 1), "pack_name": packs, "pack_code": [f"PK{i:03d}" for i in range(len(packs))],
        "description": [None] * len(packs), "age_min": np.full(len(packs), 3), "age_max": np.full(len(packs), 9),
        "language": ["en"] * len(packs), "active": [True] * len(packs), "status": np.ones(len(packs), dtype=np.int64),
        "creator": np.full(len(packs), 1), "create_date": ts(np.full(len(packs), created)),
        "updater": np.full(len(packs), 1), "update_date": ts(np.full(len(packs), created)),
        "created_at": ts(np.full(len(packs), created)), "updated_at": ts(np.full(len(packs), created)),
    })
    cpacks = ["Nursery Rhymes", "Bedtime Prompts", "Animal Sounds", "Counting Songs", "Festival Tales", "Space Facts"]
    n_cp = len(cpacks)
    items_per_pack = rng.integers(5, 13, size=n_cp)
    t["rfid_content_pack"] = pl.DataFrame({
        "id": np.arange(1, n_cp + 1), "pack_code": [f"CP-{i:03d}" for i in range(n_cp)], "name": cpacks,
        "description": [None] * n_cp, "content_type": pick(rng, ["prompt", "audio"], n_cp),
        "content_md": [f"# {name}\n" for name in cpacks], "total_items": items_per_pack, "language": ["en"] * n_cp,
        "cached_audio_urls": [None] * n_cp, "version": ["1.0"] * n_cp, "status": ["published"] * n_cp,
        "age_range": ["3-8"] * n_cp, "thumbnail_url": [None] * n_cp, "content_hash": hex_ids(rng, n_cp, "", 32),
        "active": [True] * n_cp, "creator": np.full(n_cp, 1), "create_date": ts(np.full(n_cp, created)),
        "updater": np.full(n_cp, 1), "update_date": ts(np.full(n_cp, created)),
    })
    item_pack = np.repeat(np.arange(1, n_cp + 1), items_per_pack)
    item_no = np.concatenate([np.arange(1, k + 1) for k in items_per_pack])
    n_items = len(item_pack)
    t["content_item"] = pl.DataFrame({
        "id": np.arange(1, n_items + 1), "content_pack_id": item_pack, "item_number": item_no,
        "title": [f"Item {k}" for k in item_no], "description": [None] * n_items,
        "audio_url": [f"https://cdn.cheeko.ai/packs/{p}/{k}.mp3" for p, k in zip(item_pack, item_no)],
        "audio_size_bytes": rng.integers(200_000, 3_000_000, size=n_items),
        "audio_duration_ms": rng.integers(20_000, 180_000, size=n_items),
        "images_json": [json.dumps([]) for _ in range(n_items)], "image_url": [None] * n_items,
        "lyrics_text": [None] * n_items, "content_text": [None] * n_items, "active": [True] * n_items,
        "creator": np.full(n_items, 1), "create_date": ts(np.full(n_items, created)),
        "updater": np.full(n_items, 1), "update_date": ts(np.full(n_items, created)),
    })
    # Physical cards: explicit mappings, plus ranges (series) for printed packs.
    n_cards = 300
    card_uids = np.array([f"04{v:012X}" for v in rng.choice(2**40, size=n_cards, replace=False)], dtype=object)
    card_kind = pick(rng, ["question", "content_pack", "question_pack"], n_cards, [0.5, 0.35, 0.15])
    card_ref = np.array([
        int(rng.choice(q_ids)) if k == "question" else int(rng.integers(1, n_cp + 1)) if k == "content_pack"
        else int(rng.integers(1, len(subjects) + 1)) for k in card_kind
    ])
    t["rfid_card_mapping"] = pl.DataFrame({
        "id": np.arange(1, n_cards + 1), "uid": card_uids,
        "content_pack_id": [None] * n_cards,
        "question_id": [int(r) if k == "question" else None for k, r in zip(card_kind, card_ref)],
        "content_ref_id": [int(r) if k == "content_pack" else None for k, r in zip(card_kind, card_ref)],
        "question_pack_id": [int(r) if k == "question_pack" else None for k, r in zip(card_kind, card_ref)],
        "notes": [None] * n_cards, "status": np.ones(n_cards, dtype=np.int64),
        "created_at": ts(np.full(n_cards, created)), "updated_at": ts(np.full(n_cards, created)),
    }).with_columns(pl.col("content_pack_id").cast(pl.Int64))
    t["rfid_series"] = pl.DataFrame({
        "id": np.arange(1, len(packs) + 1), "series_name": [f"{p} series" for p in packs],
        "start_uid": [f"05{i:02X}0000000000" for i in range(len(packs))],
        "end_uid": [f"05{i:02X}00000000FF" for i in range(len(packs))],
        "content_pack_id": np.arange(1, len(packs) + 1), "question_id": [None] * len(packs),
        "content_ref_id": [int(i % n_cp + 1) for i in range(len(packs))], "question_pack_id": [None] * len(packs),
        "priority": np.zeros(len(packs), dtype=np.int64), "notes": [None] * len(packs),
        "status": np.ones(len(packs), dtype=np.int64),
        "created_at": ts(np.full(len(packs), created)), "updated_at": ts(np.full(len(packs), created)),
    }).with_columns(pl.col("question_id").cast(pl.Int64), pl.col("question_pack_id").cast(pl.Int64))
    legacy = 50
    t["ai_rfid_tag"] = pl.DataFrame({
        "id": np.arange(1, legacy + 1), "tag_uid": card_uids[:legacy], "tag_type": ["card"] * legacy,
        "content_type": card_kind[:legacy], "content_id": [str(r) for r in card_ref[:legacy]],
        "description": [None] * legacy, "status": np.ones(legacy, dtype=np.int64),
        "created_at": ts(np.full(legacy, created - 200 * 86400)), "updated_at": ts(np.full(legacy, created - 200 * 86400)),
    })
    t["rfid_tags"] = pl.DataFrame({
        "id": np.arange(1, 101), "uid": card_uids[:100], "tag_type": ["card"] * 100,
        "label": [f"Card {i}" for i in range(1, 101)], "content_ref": [f"{k}:{r}" for k, r in zip(card_kind[:100], card_ref[:100])],
        "active": [True] * 100, "created_at": ts(np.full(100, created)), "updated_at": ts(np.full(100, created)),
    })

    dict_types = {"gender": ["unset", "male", "female"], "device_status": ["disabled", "active"], "board": vocab.BOARDS}
    t["sys_dict_type"] = pl.DataFrame({
        "id": np.arange(1, len(dict_types) + 1), "dict_type": list(dict_types),
        "dict_name": [k.replace("_", " ").title() for k in dict_types], "remark": [None] * len(dict_types),
        "sort": list(range(len(dict_types))),
        "created_at": ts(np.full(len(dict_types), created)), "updated_at": ts(np.full(len(dict_types), created)),
    })
    entries = [(i + 1, k, label, str(j)) for i, (k, labels) in enumerate(dict_types.items()) for j, label in enumerate(labels)]
    t["sys_dict_data"] = pl.DataFrame({
        "id": np.arange(1, len(entries) + 1), "dict_type_id": [e[0] for e in entries], "dict_type": [e[1] for e in entries],
        "dict_label": [e[2] for e in entries], "dict_value": [e[3] for e in entries], "remark": [None] * len(entries),
        "sort": [int(e[3]) for e in entries],
        "created_at": ts(np.full(len(entries), created)), "updated_at": ts(np.full(len(entries), created)),
    })
    ota = [(b, v) for b in vocab.BOARDS for v in vocab.APP_VERSIONS]
    t["ai_ota"] = pl.DataFrame({
        "id": uuids(rng, len(ota)), "board": [b for b, _ in ota], "app_version": [v for _, v in ota],
        "firmware_url": [f"https://cdn.cheeko.ai/fw/{b}/{v}.bin" for b, v in ota],
        "file_size_bytes": rng.integers(1_500_000, 4_000_000, size=len(ota)),
        "checksum_sha256": hex_ids(rng, len(ota), "", 64), "release_notes": [f"Release {v}" for _, v in ota],
        "is_forced": [False] * len(ota), "status": np.ones(len(ota), dtype=np.int64),
        "released_at": ts(created + np.array([vocab.APP_VERSIONS.index(v) for _, v in ota]) * 30 * 86400),
        "creator": np.full(len(ota), 1), "created_at": ts(np.full(len(ota), created)), "updated_at": ts(np.full(len(ota), created)),
    })
    sections = {"overview": True, "engagement": True, "games": True, "content": True,
                "tokens": True, "cognova": True, "data_quality": True, "delivery": True}
    t["email_report_config"] = pl.DataFrame({
        "id": uuids(rng, 1), "enabled": [True], "schedule_hour": [8], "schedule_timezone": ["Asia/Kolkata"],
        "recipients": [json.dumps(["ops@cheeko.example", "founders@cheeko.example"])],
        "sections": [json.dumps(sections)], "created_at": ts(np.array([created])), "updated_at": ts(np.array([created])),
    })
    return Catalogue(
        tables=t,
        llm_ids=llm_ids,
        model_ids=by_type,
        voice_ids=list(voice_ids),
        story_ids=story_ids,
        story_seconds=story_seconds,
        music_ids=music_ids,
        music_seconds=music_seconds,
        story_library_ids=np.arange(1, n_story + 1),
        music_library_ids=np.arange(n_story + 1, n_story + n_music + 1),
        card_uids=card_uids,
        card_resolved_type=card_kind,
        series_count=len(packs),
    )
