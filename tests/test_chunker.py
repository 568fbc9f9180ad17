"""The memory-file chunker: plain functions, tested without Dagster or a database."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest

from pipelines import chunker
from pipelines.chunker import MAX_TOKENS, TARGET_CHARS, ChunkerError, chunk_file, model_token_counter
from pipelines.generator.memories import personality_file

MAC = "24:0a:c4:1b:2c:3d"
DAY = dt.date(2026, 3, 31)
FACTS = {"favourite_animal": "red panda", "favourite_colour": "purple", "pet": "a turtle called Bubbles",
         "best_friend": "Kiaan", "favourite_food": "mango ice cream", "fear": "thunderstorms", "dream_job": "astronaut"}


def personality() -> tuple[str, dict[str, int]]:
    return personality_file("Aarav", 6, "Grade 1", "English", ["space", "dinosaurs"], FACTS)


def lines_of(content: str, chunk: chunker.Chunk) -> str:
    return "\n".join(chunker.normalise_line(x) for x in content.split("\n")[chunk.start_line - 1 : chunk.end_line]).strip("\n")


def test_chunks_are_exact_line_ranges_within_one_section():
    content, where = personality()
    chunks = chunk_file(content, mac=MAC, file_type="personality")
    assert chunks
    for chunk in chunks:
        assert lines_of(content, chunk) == chunk.text  # 1-based, inclusive, in the file as stored
        inner_headings = [line for line in chunk.text.split("\n")[1:] if line.startswith("#")]
        assert inner_headings == []  # a heading only ever opens a chunk
    for fact, line in where.items():
        holder = [c for c in chunks if c.start_line <= line <= c.end_line]
        assert len(holder) == 1 and FACTS[fact] in holder[0].text
    assert {c.category for c in chunks} >= {"personality:favourites", "personality:dreams"}


def test_limits_hold_with_the_models_tokenizer():
    count = model_token_counter()
    text = "\n\n".join(f"## Day {i}\n" + "\n".join(f"Line {j}: Cheeko talked about rockets and rivers." for j in range(30))
                       for i in range(5))
    chunks = chunk_file(text, mac=MAC, file_type="daily", file_date=DAY)
    assert all(count(c.text) <= MAX_TOKENS for c in chunks)
    assert all(len(c.text) <= TARGET_CHARS for c in chunks)
    assert sum(c.end_line - c.start_line + 1 for c in chunks) >= 150  # every content line is in a chunk


def test_an_edit_in_one_section_leaves_the_others_alone():
    content, _ = personality()
    before = {c.content_hash for c in chunk_file(content, mac=MAC, file_type="personality")}
    edited = content.replace("## Dreams", "## Dreams\n- Lately also wants to be a chef.")
    after = chunk_file(edited, mac=MAC, file_type="personality")
    changed = {c.category for c in after if c.content_hash not in before}
    assert changed == {"personality:dreams"}


@pytest.mark.parametrize("content", ["", "   \n\t\n  \n", "\n\n\n"])
def test_empty_and_blank_files_have_no_chunks(content):
    assert chunk_file(content, mac=MAC, file_type="daily", file_date=DAY) == []


def test_hostile_text_is_chunked_not_crashed():
    count = model_token_counter()
    long_line = "word " * 30_000  # 150k characters on one line
    content = f"# Notes 🦖\n\x01\x02 bell\x07 escape\x1b[31m\nlone surrogate \ud800 here\n\n{long_line}\ntail line\n"
    chunks = chunk_file(content, mac="AA-BB-CC-DD-EE-FF", file_type="scratch", file_date=DAY)
    assert all("\x07" not in c.text and "\x1b" not in c.text and "\ud800" not in c.text for c in chunks)
    pieces = [c for c in chunks if c.start_line == c.end_line == 5]
    assert len(pieces) > 100 and all(count(c.text) <= MAX_TOKENS for c in pieces)
    assert chunks[-1].text == "tail line" and chunks[-1].start_line == 6
    assert chunks[0].file_path == "memories/aa:bb:cc:dd:ee:ff/scratch/2026-03-31.md"


def test_a_file_of_several_megabytes_is_chunked_quickly():
    content = "\n".join(f"## Note {i}\n" + "Cheeko remembered a long story about the ocean. " * 20 for i in range(3000))
    began = time.perf_counter()
    chunks = chunk_file(content, mac=MAC, file_type="scratch", file_date=DAY)
    elapsed = time.perf_counter() - began
    print(f"{len(content) / 1e6:.1f} MB -> {len(chunks)} chunks in {elapsed:.1f}s")
    assert len(chunks) >= 3000 and len(content) > 2_500_000


def test_hash_covers_text_model_and_chunker_version(monkeypatch):
    assert chunker.content_hash("hello") == chunker.content_hash("hello")
    assert chunker.content_hash("hello") != chunker.content_hash("hello", model_name="another-model")
    first = chunker.content_hash("hello")
    monkeypatch.setattr(chunker, "CHUNKER_VERSION", "2")
    assert chunker.content_hash("hello") != first


@pytest.mark.parametrize(("mac", "expected"), [("24:0A:C4:1B:2C:3D", MAC), ("240ac41b2c3d", MAC), ("24-0a-c4-1b-2c-3d", MAC)])
def test_file_paths_are_stable_for_any_spelling(mac, expected):
    assert chunker.file_path(mac, "Daily", DAY) == f"memories/{expected}/daily/2026-03-31.md"
    assert chunker.file_path(mac, "personality", None) == f"memories/{expected}/personality/undated.md"


@pytest.mark.parametrize("mac", ["zz:zz:zz:zz:zz:zz", "12:34:56", "", "not-a-mac"])
def test_an_invalid_mac_is_refused_by_name(mac):
    with pytest.raises(ChunkerError, match="not a MAC address"):
        chunk_file("# x\nhello", mac=mac, file_type="daily")


# The README's examples of file_path, e.g.
#   MAC 240ac41b2c3d, file_type "personality", no file_date  ->  memories/24:0a:c4:1b:2c:3d/personality/undated.md
README_EXAMPLE = re.compile(r'^\s*MAC (\S+), file_type "([^"]*)", (?:file_date (\d{4}-\d{2}-\d{2})|no file_date)\s+->\s+(\S+)$',
                            re.MULTILINE)


def test_the_readme_file_path_format_is_what_the_chunker_writes():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Memory search", 1)[1].split("\n## ", 1)[0]
    assert "`memories/<MAC>/<file type>/<file date>.md`" in section
    examples = README_EXAMPLE.findall(section)
    assert len(examples) >= 4
    for mac, file_type, day, path in examples:
        file_date = dt.date.fromisoformat(day) if day else None
        assert chunker.file_path(mac, file_type, file_date) == path
        chunks = chunk_file("# Notes\nhello\n\n## More\nworld", mac=mac, file_type=file_type, file_date=file_date)
        assert {c.file_path for c in chunks} == {path}


def test_the_documented_text_normalisation():
    lf = "# Notes\nCaf\u00e9 au lait,\tthen bed.   \n  An indented line\u00a0\n\n## Mood\nHappy\n"
    plain = chunk_file(lf, mac=MAC, file_type="daily", file_date=DAY)
    texts = [(c.text, c.start_line, c.end_line) for c in plain]
    # CRLF line endings and decomposed Unicode (NFD) chunk exactly like LF and NFC.
    assert [(c.text, c.start_line, c.end_line) for c in chunk_file(lf.replace("\n", "\r\n"), mac=MAC, file_type="daily",
                                                                   file_date=DAY)] == texts
    assert [(c.text, c.start_line, c.end_line) for c in chunk_file(lf.replace("\u00e9", "e\u0301"), mac=MAC,
                                                                   file_type="daily", file_date=DAY)] == texts
    # Tabs and leading blanks stay, trailing whitespace goes; lines are joined by \n.
    assert plain[0].text == "# Notes\nCaf\u00e9 au lait,\tthen bed.\n  An indented line"
    # A lone CR and other control characters are removed, without starting a new line.
    lone = chunk_file("one\rtwo\x1b[31m red\x7f\nthree", mac=MAC, file_type="daily", file_date=DAY)
    assert [(c.text, c.start_line, c.end_line) for c in lone] == [("onetwo[31m red\nthree", 1, 2)]
    assert [c.category for c in plain] == ["daily:notes", "daily:mood"]
