"""Device memories, chunked and embedded into Cheeko's ``memory_chunks`` (group ``memory``)."""

import datetime as dt

import dagster as dg

from assets.resources import EmbeddingModel, SourceDatabases
from pipelines import memory_sync

MEMORY_CHUNKS_KEY = dg.AssetKey(["memory_chunks"])
# The memory sync reads Cheeko's device_memories itself, not the warehouse's copy (raw_cheeko/device_memories).
DEVICE_MEMORIES = dg.AssetSpec(
    ["cheeko", "device_memories"], group_name="memory", kinds={"postgres"}, owners=["team:data"],
    description="Cheeko's device_memories table: one memory file per device and day, uploaded by the devices. "
                "Read directly by the memory sync; the warehouse's copy is raw_cheeko/device_memories.")
CONSISTENT = "memory_chunks_match_their_files"
NO_FAILED_FILES = "every_memory_file_synced"


@dg.asset(
    key=MEMORY_CHUNKS_KEY,
    group_name="memory",
    description=(
        "Cheeko's memory_chunks (pgvector), kept in step with device_memories. Only rows whose content changed "
        "since the last sync are re-chunked (section-anchored chunks of about 800 characters, at most 256 model "
        "tokens), whatever their updated_at says: a row written since (its xmin moved) is compared by an md5 "
        "computed in PostgreSQL. Only chunk texts the device does not have yet are embedded with the bundled "
        "all-MiniLM-L6-v2 (normalised, 384-d); chunks no file holds any more are deleted. One transaction "
        "per batch of files, through pipelines.writes. Rows that cannot be chunked are counted, not fatal."
    ),
    kinds={"postgres", "pgvector", "pytorch"},
    deps=[DEVICE_MEMORIES],
    # Devices upload a memory file a day, so the sensor starts a sync at least daily in a live fleet.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26)),
    owners=["team:data"],
    check_specs=[
        dg.AssetCheckSpec(CONSISTENT, asset=MEMORY_CHUNKS_KEY,
                          description="Every chunk a synced file holds exists with an embedding, and no synced device "
                                      "has a chunk that no file holds."),
        dg.AssetCheckSpec(NO_FAILED_FILES, asset=MEMORY_CHUNKS_KEY,
                          description="device_memories rows that could not be chunked or embedded (a MAC that is not "
                                      "one, a non-finite embedding); they are retried when they change."),
    ],
)
def memory_chunks(context: dg.AssetExecutionContext, sources: SourceDatabases,
                  embedding_model: EmbeddingModel) -> dg.MaterializeResult:
    url = sources.url("cheeko")
    embedder = embedding_model.get()
    result = memory_sync.sync(url, embedder.encode, model_name=embedder.name, progress=context.log.info)
    counts = memory_sync.consistency(url)
    failing = memory_sync.sync_status(url)
    rate = result.texts_embedded / result.embed_seconds if result.embed_seconds else None
    metadata = {
        "files_seen": result.files_seen,
        "files_changed": result.files_changed,
        "files_rewritten": result.files_rewritten,
        "files_deleted": result.files_deleted,
        "files_failed": result.files_failed,
        "chunks_added": result.chunks_added,
        "chunks_kept": result.chunks_kept,
        "chunks_deleted": result.chunks_deleted,
        "chunks_failed": result.chunks_failed,
        "chunks_moved": result.chunks_moved,
        "texts_embedded": result.texts_embedded,
        "embed_seconds": round(result.embed_seconds, 3),
        "texts_per_second": round(rate, 1) if rate else None,
        "model": embedder.name,
        "device": embedder.resolved_device() if result.texts_embedded else embedder.device,
        "bad_input": dg.MetadataValue.json(dict(sorted(result.findings.items()))),
        "dagster/row_count": failing["chunks"],
    }
    if result.failures:
        metadata["failures"] = dg.MetadataValue.md("\n".join(f"- {line}" for line in result.failures))
    return dg.MaterializeResult(
        metadata={k: v for k, v in metadata.items() if v is not None},
        check_results=[
            dg.AssetCheckResult(check_name=CONSISTENT, passed=not any(counts.values()), metadata=counts),
            dg.AssetCheckResult(check_name=NO_FAILED_FILES, passed=failing["files_failing"] == 0,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"files_failing": failing["files_failing"],
                                          "samples": dg.MetadataValue.md("\n".join(f"- {s}" for s in failing["samples"]) or "none")}),
        ],
    )


MEMORY_ASSETS = [DEVICE_MEMORIES, memory_chunks]
