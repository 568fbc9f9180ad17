"""The memory sync and search against a real PostgreSQL with pgvector and the real bundled model."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest

from pipelines import chunker, generator, memory_search, memory_sync, migrate, postgres, writes
from pipelines.embedding import Embedder

MAC = "24:0a:c4:00:00:01"
OTHER = "24:0a:c4:00:00:02"
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(batch_size=32, device="cpu")


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the sync may swallow it."""


class Counting:
    """The real model, counting the texts it is asked to embed (and able to fail on cue)."""

    def __init__(self, embedder: Embedder, fail_on_call: int | None = None, poison: str | None = None):
        self.embedder, self.calls, self.texts = embedder, 0, []
        self.fail_on_call, self.poison = fail_on_call, poison

    def __call__(self, texts):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise Crash("the process died mid-run")
        self.texts += list(texts)
        vectors = self.embedder.encode(texts)
        if self.poison:
            for i, text in enumerate(texts):
                if self.poison in text:
                    vectors[i] = np.nan
        return vectors


def put(url: str, mac: str, file_type: str, day: dt.date | None, content: str, at: dt.datetime = NOW,
        memory_id: uuid.UUID | None = None) -> uuid.UUID:
    """Insert or replace one device_memories row (as the app would)."""
    memory_id = memory_id or uuid.uuid4()
    with writes.transaction(url) as conn:
        conn.execute("DELETE FROM device_memories WHERE id = %s", (memory_id,))
        conn.execute("INSERT INTO device_memories (id, mac_id, file_type, file_date, content, updated_at) "
                     "VALUES (%s, %s, %s, %s, %s, %s)", (memory_id, mac, file_type, day, content, at))
    return memory_id


def chunk_rows(url: str) -> dict[tuple[str, str], tuple]:
    with postgres.connect(url) as conn:
        rows = conn.execute("SELECT mac_id, content_hash, text, file_path, start_line, end_line, category, id "
                            "FROM memory_chunks").fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def daily(day: int, mood: str, extra: str = "") -> str:
    return (f"# Daily memory 2026-02-{day:02d}\n\n## Conversations\nTalked about volcanoes on day {day}.\n\n"
            f"## Mood\n{mood}\n\n## Follow-ups\n- Ask about the science fair {day}.{extra}\n")


def test_sync_is_incremental_per_file_and_per_chunk(make_databases, embedder):
    url = make_databases().cheeko
    first = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Cheerful and curious."))
    second = put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Cheerful and curious."))
    third = put(url, OTHER, "daily", dt.date(2026, 2, 2), daily(2, "Cheerful and curious."))

    model = Counting(embedder)
    result = memory_sync.sync(url, model)
    assert (result.files_seen, result.files_changed, result.files_failed) == (3, 3, 0)
    # Four chunks a file; per device the shared "Mood" chunk is one row, and the model
    # saw each distinct text once (the other device's file repeats the second file).
    chunks = chunk_rows(url)
    assert result.chunks_added == len(chunks) == 4 + 3 + 4
    assert len(model.texts) == len(set(model.texts)) == 7
    assert memory_sync.consistency(url) == {"sources_without_chunk": 0, "chunks_without_source": 0, "chunks_without_embedding": 0}

    # Unchanged: nothing read, nothing embedded, nothing written.
    again = Counting(embedder)
    result = memory_sync.sync(url, again)
    assert (result.files_changed, result.chunks_added, result.chunks_deleted, again.calls) == (0, 0, 0, 0)
    assert chunk_rows(url) == chunks

    # One section edited: one file re-chunked, one text embedded, the rest kept with their ids.
    put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Cheerful and curious.", " Bring the poster."),
        at=NOW + dt.timedelta(hours=1), memory_id=second)
    edit = Counting(embedder)
    result = memory_sync.sync(url, edit)
    assert result.files_changed == 1
    assert edit.texts == ["## Follow-ups\n- Ask about the science fair 2. Bring the poster."]
    assert (result.chunks_added, result.chunks_deleted, result.chunks_kept) == (1, 1, 3)
    after = chunk_rows(url)
    kept = set(chunks) & set(after)
    assert len(kept) == len(chunks) - 1 and all(after[k][-1] == chunks[k][-1] for k in kept)

    # The file that held the shared Mood text is deleted: that chunk stays (the other file has it)
    # and now points at the surviving file; the deleted file's own chunks go.
    mood = chunker.content_hash("## Mood\nCheerful and curious.")
    assert after[(MAC, mood)][1] == chunker.file_path(MAC, "daily", dt.date(2026, 2, 1))
    with writes.transaction(url) as conn:
        conn.execute("DELETE FROM device_memories WHERE id = %s", (first,))
    result = memory_sync.sync(url, Counting(embedder))
    assert (result.files_deleted, result.chunks_deleted, result.chunks_moved) == (1, 3, 1)
    final = chunk_rows(url)
    assert final[(MAC, mood)][1:3] == (chunker.file_path(MAC, "daily", dt.date(2026, 2, 2)), 6)
    assert final[(MAC, mood)][-1] == chunks[(MAC, mood)][-1]
    assert {k for k in final if k[0] == MAC} == {(MAC, c.content_hash) for c in chunker.chunk_file(
        daily(2, "Cheerful and curious.", " Bring the poster."), mac=MAC, file_type="daily", file_date=dt.date(2026, 2, 2))}
    assert {k for k in final if k[0] == OTHER} == {k for k in chunks if k[0] == OTHER}
    assert memory_sync.consistency(url)["chunks_without_source"] == 0


def test_a_row_replaced_under_a_new_id_keeps_its_chunks(make_databases, embedder):
    url = make_databases().cheeko
    old = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    memory_sync.sync(url, embedder.encode)
    before = chunk_rows(url)
    with writes.transaction(url) as conn:
        conn.execute("DELETE FROM device_memories WHERE id = %s", (old,))
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."), at=NOW + dt.timedelta(hours=1))
    model = Counting(embedder)
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.files_deleted, model.calls) == (1, 1, 0)
    assert (result.chunks_added, result.chunks_kept, result.chunks_deleted) == (0, 4, 0)
    assert chunk_rows(url) == before


def test_repeated_text_in_one_file_is_one_chunk_kept_until_its_last_copy_goes(make_databases, embedder):
    url = make_databases().cheeko
    text = "## Monday\nPlayed football.\n\n## Tuesday\nPlayed football.\n"
    memory_id = put(url, MAC, "daily", dt.date(2026, 2, 1), "## Monday\nSang.\n\n## Tuesday\nSang.\n")
    memory_sync.sync(url, embedder.encode)
    assert len(chunk_rows(url)) == 2
    put(url, MAC, "daily", dt.date(2026, 2, 1), text, at=NOW + dt.timedelta(hours=1), memory_id=memory_id)
    result = memory_sync.sync(url, embedder.encode)
    assert (result.chunks_added, result.chunks_deleted) == (2, 2)
    assert sorted(v[0] for v in chunk_rows(url).values()) == ["## Monday\nPlayed football.", "## Tuesday\nPlayed football."]


def test_stored_rows_are_the_chunker_output_with_the_model_vectors(make_databases, embedder):
    url = make_databases().cheeko
    text = "# Personality\n\n## Favourites\n- Favourite animal: the owl.\n\n## Dreams\n- Wants to be a pilot.\n"
    put(url, "24-0A-C4-00-00-01", "personality", None, text)  # an odd spelling of MAC
    memory_sync.sync(url, embedder.encode)
    with postgres.connect(url) as conn:
        postgres.register_vector(conn)
        rows = conn.execute("SELECT mac_id, text, file_path, start_line, end_line, category, embedding FROM memory_chunks "
                            "ORDER BY start_line").fetchall()
    expected = chunker.chunk_file(text, mac=MAC, file_type="personality")
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (MAC, c.text, c.file_path, c.start_line, c.end_line, c.category) for c in expected]
    vectors = embedder.encode([c.text for c in expected])
    for row, vector in zip(rows, vectors):
        assert np.allclose(row[6].to_numpy(), vector, atol=1e-6)
        assert abs(np.linalg.norm(row[6].to_numpy()) - 1) < 1e-5


def test_bad_input_is_counted_and_the_run_goes_on(make_databases, embedder):
    url = make_databases().cheeko
    bad_mac = put(url, "not-a-mac", "daily", dt.date(2026, 2, 1), "## Mood\nFine.\n")
    put(url, MAC, "scratch", dt.date(2026, 2, 1), "")
    put(url, MAC, "scratch", dt.date(2026, 2, 2), "  \n\t\n")
    put(url, MAC, "scratch", dt.date(2026, 2, 3), "y" * 150_000 + "\nTail.\n")
    put(url, MAC, "scratch", dt.date(2026, 2, 4), "bell\x07 and \x1b[31m escape\n")
    put(url, MAC, "scratch", dt.date(2026, 2, 5), ("## Note\n" + "A long story about the ocean and its whales. " * 20 + "\n") * 1500)
    put(url, "240AC4000001", "daily", dt.date(2026, 2, 6), "## Mood\nSleepy.\n")
    result = memory_sync.sync(url, embedder.encode)
    assert result.files_failed == 1 and str(bad_mac) in result.failures[0] and "not a MAC" in result.failures[0]
    assert dict(result.findings) == {"invalid_macs": 1, "empty_files": 2, "long_line_files": 1,
                                     "control_character_files": 1, "large_files": 1, "respelled_macs": 1}
    with postgres.connect(url) as conn:
        error = conn.execute("SELECT error FROM warehouse.memory_files WHERE memory_id = %s", (str(bad_mac),)).fetchone()[0]
        longest = conn.execute("SELECT max(length(text)) FROM memory_chunks").fetchone()[0]
        macs = {m for (m,) in conn.execute("SELECT DISTINCT mac_id FROM memory_chunks")}
    assert "not a MAC" in error and longest <= chunker.TARGET_CHARS and macs == {MAC}
    # A failed file is not retried until it changes.
    assert memory_sync.sync(url, embedder.encode).files_failed == 0


def test_a_crash_leaves_every_file_whole_and_a_rerun_finishes(make_databases, embedder, monkeypatch):
    url = make_databases().cheeko
    for day in range(1, 7):
        put(url, MAC, "daily", dt.date(2026, 2, day), daily(day, f"Mood number {day}."))
    with pytest.raises(Crash):
        memory_sync.sync(url, Counting(embedder, fail_on_call=2), batch_files=2)
    with postgres.connect(url) as conn:
        synced = conn.execute("SELECT count(*) FROM warehouse.memory_files").fetchone()[0]
        per_file = conn.execute("SELECT count(DISTINCT file_path) FROM memory_chunks").fetchone()[0]
    assert synced == per_file == 2  # the first batch, whole; nothing of the second
    assert memory_sync.consistency(url)["sources_without_chunk"] == 0

    # A failure inside the transaction (after some rows were copied) rolls the whole batch back.
    real_copy = writes.copy_rows
    calls = {"n": 0}

    def failing_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise postgres.errors.DiskFull("no space left")
        return real_copy(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(writes, "copy_rows", failing_copy)
        with pytest.raises(postgres.errors.DiskFull):
            memory_sync.sync(url, embedder.encode, batch_files=2)
    with postgres.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM warehouse.memory_files").fetchone()[0] == 2

    result = memory_sync.sync(url, embedder.encode, batch_files=2)
    assert result.files_changed == 4
    clean = make_databases().cheeko
    for day in range(1, 7):
        put(clean, MAC, "daily", dt.date(2026, 2, day), daily(day, f"Mood number {day}."))
    memory_sync.sync(clean, embedder.encode)
    assert {k: v[:-1] for k, v in chunk_rows(url).items()} == {k: v[:-1] for k, v in chunk_rows(clean).items()}


def test_unembeddable_chunks_are_counted_and_retried(make_databases, embedder):
    url = make_databases().cheeko
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Poisoned mood."))
    put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Happy."))
    result = memory_sync.sync(url, Counting(embedder, poison="Poisoned"))
    assert (result.files_failed, result.chunks_failed, result.files_changed) == (1, 1, 2)
    assert memory_sync.consistency(url)["chunks_without_embedding"] == 0
    assert memory_sync.sync_status(url)["files_failing"] == 1
    retry = memory_sync.sync(url, embedder.encode)
    assert (retry.files_changed, retry.files_failed, retry.chunks_added) == (1, 0, 4)
    assert memory_sync.sync_status(url)["files_failing"] == 0


def test_an_edit_that_could_not_be_embedded_and_was_undone_clears_its_error(make_databases, embedder):
    url = make_databases().cheeko
    memory_id = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    memory_sync.sync(url, embedder.encode)
    before = chunk_rows(url)
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = %s WHERE id = %s", (daily(1, "Poisoned."), memory_id))
    assert memory_sync.sync(url, Counting(embedder, poison="Poisoned")).files_failed == 1
    assert chunk_rows(url) == before  # the synced version's chunks stay
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = %s WHERE id = %s", (daily(1, "Calm."), memory_id))
    model = Counting(embedder)
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.files_failed, result.chunks_added, model.calls) == (1, 0, 0, 0)
    assert memory_sync.sync_status(url)["files_failing"] == 0 and chunk_rows(url) == before


def test_a_text_the_model_raises_on_costs_only_its_file(make_databases, embedder):
    url = make_databases().cheeko
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Cursed mood."))
    put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Happy."))

    def refuses_cursed(texts):
        if any("Cursed" in t for t in texts):
            raise RuntimeError("CUDA out of memory")
        return embedder.encode(texts)

    result = memory_sync.sync(url, refuses_cursed)
    assert (result.files_failed, result.chunks_failed, result.chunks_added) == (1, 1, 4)
    assert "could not be embedded" in memory_sync.sync_status(url)["samples"][0]

    def broken(texts):
        raise RuntimeError("model weights corrupt")

    put(url, OTHER, "daily", dt.date(2026, 2, 3), "\n\n".join(f"## S{i}\nLine {i}." for i in range(30)))
    with pytest.raises(RuntimeError, match="corrupt"):
        memory_sync.sync(url, broken)


def test_a_new_model_name_re_embeds_everything(make_databases, embedder):
    url = make_databases().cheeko
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    memory_sync.sync(url, embedder.encode)
    before = chunk_rows(url)
    result = memory_sync.sync(url, embedder.encode, model_name="another-model")
    assert result.files_changed == 1 and result.chunks_added == result.chunks_deleted == len(before) == 4
    assert not set(before) & set(chunk_rows(url))


def test_chunks_deleted_behind_the_syncs_back_are_restored(make_databases, embedder):
    url = make_databases().cheeko
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Calm."))
    memory_sync.sync(url, embedder.encode)
    before = chunk_rows(url)
    with writes.transaction(url) as conn:
        conn.execute("DELETE FROM memory_chunks WHERE text LIKE %s", ("%Calm%",))
    assert memory_sync.consistency(url)["sources_without_chunk"] == 1
    result = memory_sync.sync(url, embedder.encode)
    assert (result.files_changed, result.chunks_added) == (2, 1)
    assert {k: v[:-1] for k, v in chunk_rows(url).items()} == {k: v[:-1] for k, v in before.items()}
    assert not any(memory_sync.consistency(url).values())


def test_one_sync_at_a_time(make_databases, embedder):
    url = make_databases().cheeko
    with postgres.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (memory_sync.LOCK_KEY,))
        with pytest.raises(memory_sync.SyncBusy):
            memory_sync.sync(url, embedder.encode)


def test_a_prisma_spelled_table_syncs_and_a_missing_column_is_named(make_databases, embedder):
    """varchar(36) ids and a naive timestamp(3) updated_at (Prisma's defaults) sync like uuid and timestamptz;
    a column the sync needs and the table lacks stops it with one line naming it, before any work."""
    url = make_databases().cheeko
    with postgres.connect(url) as conn:
        conn.execute("ALTER TABLE device_memories ALTER COLUMN id TYPE varchar(36), "
                     "ALTER COLUMN updated_at TYPE timestamp(3) USING updated_at AT TIME ZONE 'UTC'")
    memory_id = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."), memory_id=str(uuid.uuid4()))
    first = memory_sync.sync(url, embedder.encode)
    assert first.files_changed == 1 and first.chunks_added > 0 and not first.failures
    assert memory_sync.sync(url, embedder.encode).files_changed == 0  # naive and aware times compare equal
    put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Sleepy."), at=NOW + dt.timedelta(hours=1), memory_id=memory_id)
    assert memory_sync.sync(url, embedder.encode).files_changed == 1
    assert memory_sync.pending(url).changed == 0
    with postgres.connect(url) as conn:
        conn.execute("ALTER TABLE device_memories DROP COLUMN file_type")
    with pytest.raises(memory_sync.SyncError) as stopped:
        memory_sync.sync(url, embedder.encode)
    assert "\n" not in str(stopped.value)
    assert str(stopped.value).startswith("cheeko lacks device_memories.file_type, which the memory sync reads and writes")


# -- changes found by content (issue 17) ---------------------------------------------------------------------


def expected_chunks(url: str) -> dict[tuple[str, str], str]:
    """(mac, content_hash) -> text of every chunk the rows of device_memories chunk to, as the chunker makes them."""
    with postgres.connect(url) as conn:
        rows = conn.execute("SELECT mac_id, file_type, file_date, content FROM device_memories").fetchall()
    expected = {}
    for mac, file_type, file_date, content in rows:
        mac = chunker.normal_mac(mac)
        for c in chunker.chunk_file(content, mac=mac, file_type=file_type, file_date=file_date):
            expected[(mac, c.content_hash)] = c.text
    return expected


def assert_in_step(url: str, *models: Counting) -> None:
    """memory_chunks holds exactly what the source files chunk to, and no text was embedded twice.

    (A text is embedded once per device that holds it: these tests give each device texts of its own.)
    """
    assert {k: v[0] for k, v in chunk_rows(url).items()} == expected_chunks(url)
    assert not any(memory_sync.consistency(url).values())
    texts = [t for model in models for t in model.texts]
    assert len(texts) == len(set(texts)), "a text was embedded twice"


def test_a_memory_edited_without_touching_updated_at_is_resynced(make_databases, embedder):
    url = make_databases().cheeko
    first = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    second = put(url, MAC, "daily", dt.date(2026, 2, 2), daily(2, "Calm."))
    model = Counting(embedder)
    memory_sync.sync(url, model)
    embedded = len(model.texts)

    # The content changes, updated_at does not: seen by the sensor and by the sync, one text embedded.
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = %s WHERE id = %s", (daily(1, "Calm.", " Bring a kite."), first))
    waiting = memory_sync.pending(url)
    assert (waiting.changed, waiting.rewritten, waiting.any) == (1, 0, True)
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.files_rewritten, result.chunks_added, result.chunks_deleted) == (1, 0, 1, 1)
    assert model.texts[embedded:] == ["## Follow-ups\n- Ask about the science fair 1. Bring a kite."]
    assert_in_step(url, model)

    # Written again with the same content (updated_at bumped, as an app's upsert does): not re-chunked,
    # not a reason to start a sync; the next sync only moves its record on.
    unchanged = chunk_rows(url)
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = content, updated_at = %s WHERE id = %s",
                     (NOW + dt.timedelta(days=1), second))
    waiting = memory_sync.pending(url)
    assert (waiting.changed, waiting.rewritten, waiting.any) == (0, 1, False)
    calls = model.calls
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.files_rewritten, model.calls) == (0, 1, calls)
    assert chunk_rows(url) == unchanged
    assert memory_sync.pending(url).rewritten == 0
    with postgres.connect(url) as conn:
        recorded = conn.execute("SELECT source_updated_at FROM warehouse.memory_files WHERE memory_id = %s",
                                (str(second),)).fetchone()[0]
    assert recorded == NOW + dt.timedelta(days=1)

    # Only the date changes: the chunks move to the new path; their texts are the same, so none is embedded.
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET file_date = %s WHERE id = %s", (dt.date(2026, 2, 3), second))
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.chunks_added, result.chunks_moved, model.calls) == (1, 0, 3, calls)
    paths = {v[1] for v in chunk_rows(url).values()}
    assert chunker.file_path(MAC, "daily", dt.date(2026, 2, 3)) in paths
    assert chunker.file_path(MAC, "daily", dt.date(2026, 2, 2)) not in paths
    assert_in_step(url, model)


def test_rows_written_after_a_sync_with_back_dated_timestamps_are_synced(make_databases, embedder):
    url = make_databases().cheeko
    edited = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    same_time = put(url, OTHER, "daily", dt.date(2026, 2, 1), daily(1, "Sleepy."))
    model = Counting(embedder)
    memory_sync.sync(url, model)
    embedded = len(model.texts)

    past = NOW - dt.timedelta(days=30)
    put(url, MAC, "daily", dt.date(2026, 1, 15), daily(15, "Brave."), at=past)  # new, older than anything synced
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = %s, updated_at = %s WHERE id = %s",
                     (daily(1, "Grumpy."), past, edited))  # timestamp moved backwards
        conn.execute("UPDATE device_memories SET content = %s, updated_at = %s WHERE id = %s",
                     (daily(1, "Sleepy.", " And the moon."), NOW, same_time))  # the very same timestamp
    assert memory_sync.pending(url).changed == 3
    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.files_failed) == (3, 0)
    # New texts only: the new file's four, one Mood and one Follow-ups.
    assert len(model.texts) - embedded == 4 + 1 + 1
    assert_in_step(url, model)
    again = memory_sync.sync(url, model)
    assert (again.files_changed, again.files_rewritten, again.chunks_added) == (0, 0, 0)


def test_a_transaction_open_across_a_sync_is_synced_when_it_commits(make_databases, embedder):
    url = make_databases().cheeko
    existing = put(url, MAC, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    model = Counting(embedder)
    memory_sync.sync(url, model)
    embedded = len(model.texts)

    with postgres.connect(url) as writer:
        # Written with timestamps older than the sync that runs while the transaction is open.
        writer.execute("INSERT INTO device_memories (id, mac_id, file_type, file_date, content, updated_at) "
                       "VALUES (%s, %s, 'daily', %s, %s, %s)",
                       (uuid.uuid4(), OTHER, dt.date(2026, 2, 5), daily(5, "Curious."), NOW - dt.timedelta(days=1)))
        writer.execute("UPDATE device_memories SET content = %s, updated_at = %s WHERE id = %s",
                       (daily(1, "Cheerful."), NOW - dt.timedelta(days=1), existing))
        during = memory_sync.sync(url, model)
        assert (during.files_seen, during.files_changed, len(model.texts)) == (1, 0, embedded)
        writer.commit()

    assert memory_sync.pending(url).changed == 2
    result = memory_sync.sync(url, model)
    assert (result.files_seen, result.files_changed) == (2, 2)
    assert len(model.texts) - embedded == 4 + 1  # the new device's file, and the edited Mood
    assert_in_step(url, model)
    assert memory_sync.sync(url, model).files_changed == 0


def test_files_synced_before_the_upgrade_are_rechunked_once_and_nothing_is_embedded_again(make_databases, embedder):
    url = make_databases().cheeko
    for day in range(1, 4):
        put(url, MAC, "daily", dt.date(2026, 2, day), daily(day, "Calm."))
    edited = put(url, OTHER, "daily", dt.date(2026, 2, 1), daily(1, "Calm."))
    model = Counting(embedder)
    memory_sync.sync(url, model)
    before = chunk_rows(url)
    embedded = len(model.texts)
    # The state an upgrade leaves: synced rows without xmin and md5. One file was edited before the
    # upgrade without moving its updated_at, which the old sync could not see.
    migrate.downgrade("cheeko", url, "cheeko_warehouse_0003")
    with writes.transaction(url) as conn:
        conn.execute("UPDATE device_memories SET content = %s WHERE id = %s", (daily(1, "Calm.", " Kites."), edited))
    migrate.upgrade("cheeko", url)
    with postgres.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM warehouse.memory_files WHERE source_md5 IS NULL").fetchone()[0] == 4

    result = memory_sync.sync(url, model)
    assert (result.files_changed, result.chunks_added, result.chunks_deleted, result.chunks_moved) == (4, 1, 1, 0)
    assert model.texts[embedded:] == ["## Follow-ups\n- Ask about the science fair 1. Kites."]
    after = chunk_rows(url)
    assert all(after[k] == v for k, v in before.items() if k in after) and len(set(before) & set(after)) == len(before) - 1
    assert_in_step(url, model)
    assert memory_sync.sync(url, model).files_changed == 0


# -- search ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(make_databases, tmp_path_factory, embedder):
    """A generated fleet whose memories are synced: planted facts to find."""
    pair = make_databases()
    result = generator.generate(pair.cheeko, pair.cognova,
                                generator.Options(devices=20, days=14, seed=11, end=dt.date(2026, 3, 1)),
                                tmp_path_factory.mktemp("memfleet"), progress=lambda _: None)
    memory_sync.sync(pair.cheeko, embedder.encode)
    return pair.cheeko, result.facts


def test_planted_facts_are_found_in_the_top_5_per_device(fleet, embedder):
    assert_recall(*fleet, embedder)


def assert_recall(url: str, facts: list, embedder: Embedder) -> None:
    """At least 90% of each device's planted facts have their chunk in the top 5 for the paraphrased question."""
    by_device: dict[str, list] = {}
    for fact in facts:
        by_device.setdefault(fact.mac_id, []).append(fact)
    assert len(by_device) >= 10
    for mac, planted in by_device.items():
        found = 0
        for fact in planted:
            hits = memory_search.search(url, fact.question, embedder, mac=mac, k=5)
            path = chunker.file_path(mac, fact.file_type, None)
            found += any(h.file_path == path and h.start_line <= fact.line <= h.end_line for h in hits)
        assert found / len(planted) >= 0.9, f"{mac}: {found} of {len(planted)} planted facts in the top 5"


def test_the_int8_onnx_backend_keeps_the_recall(make_databases, tmp_path_factory):
    """WAREHOUSE_EMBED_BACKEND=onnx is allowed only while this holds (issue 5)."""
    onnx = Embedder(batch_size=32, backend="onnx", cache_dir=tmp_path_factory.mktemp("models"))
    pair = make_databases()
    result = generator.generate(pair.cheeko, pair.cognova,
                                generator.Options(devices=20, days=14, seed=11, end=dt.date(2026, 3, 1)),
                                tmp_path_factory.mktemp("onnxfleet"), progress=lambda _: None)
    synced = memory_sync.sync(pair.cheeko, onnx.encode, model_name=onnx.name)
    assert synced.chunks_added > 0 and onnx.name.endswith("+onnx-int8")
    assert_recall(pair.cheeko, result.facts, onnx)
    torch_vectors = Embedder(batch_size=32, device="cpu").encode([f.text for f in result.facts[:20]])
    assert ((onnx.encode([f.text for f in result.facts[:20]]) * torch_vectors).sum(axis=1) > 0.85).all()


def test_per_device_search_returns_k_results_on_both_paths(fleet, embedder):
    url, facts = fleet
    mac = facts[0].mac_id
    with postgres.connect(url) as conn:
        size = conn.execute("SELECT count(*) FROM memory_chunks WHERE mac_id = %s", (mac,)).fetchone()[0]
    vector = embedder.encode(["What does the child like?"])[0]
    exact = memory_search.search_vector(url, vector, mac=mac.upper().replace(":", "-"), k=7)
    scans = hnsw_scans(url)
    approximate = memory_search.search_vector(url, vector, mac=mac, k=7, exact_limit=0)  # HNSW, iterative scan
    assert hnsw_scans(url) > scans, "the approximate path did not use the HNSW index"
    assert size >= 7 and len(exact) == len(approximate) == 7
    assert {h.mac_id for h in exact + approximate} == {mac}
    assert [h.score for h in exact] == sorted((h.score for h in exact), reverse=True)
    # The iterative scan is approximate; on a small index it agrees with the exact path.
    assert [h.text for h in approximate] == [h.text for h in exact]
    everything = memory_search.search_vector(url, vector, mac=mac, k=size + 10)
    assert len(everything) == size


def hnsw_scans(url: str) -> int:
    """Scans of the HNSW index so far (statistics are flushed when the searching session ends)."""
    for _ in range(50):
        with postgres.connect(url) as conn:
            n = conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'idx_memory_chunks_embedding'").fetchone()[0]
        if n is not None:
            return n
    return 0


def test_search_rejects_bad_arguments(fleet, embedder):
    url, _ = fleet
    with pytest.raises(ValueError, match="empty"):
        memory_search.search(url, "  ", embedder)
    with pytest.raises(chunker.ChunkerError, match="not a MAC"):
        memory_search.search(url, "pets", embedder, mac="nope")
    with pytest.raises(ValueError, match="k must be"):
        memory_search.search(url, "pets", embedder, k=0)
