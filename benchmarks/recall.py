"""Measurement: how often the planted fact's chunk is the top hit (and in the top 5) for its paraphrased question.

The test suite requires at least 90% in the top 5 per device; this prints the
finer figures, per backend, on a larger fleet.

    .venv/bin/python benchmarks/recall.py [--devices 100] [--days 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import END, drop_databases, fresh_databases
from pipelines import chunker, generator, memory_search, memory_sync
from pipelines.embedding import Embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    urls = fresh_databases("bench_recall")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = generator.generate(urls["cheeko"], urls["cognova"],
                                        generator.Options(devices=args.devices, days=args.days, seed=3, end=END),
                                        Path(tmp), progress=lambda _: None)
        devices = len({f.mac_id for f in result.facts})
        print(f"{len(result.facts)} planted facts on {devices} devices ({args.devices} x {args.days}, seed 3)")
        for backend in ("torch", "onnx"):
            embedder = Embedder(backend=backend, device="cpu")
            memory_sync.sync(urls["cheeko"], embedder.encode, model_name=embedder.name)
            ranks: dict[str, list[int | None]] = {}
            for fact in result.facts:
                hits = memory_search.search(urls["cheeko"], fact.question, embedder, mac=fact.mac_id, k=5)
                path = chunker.file_path(fact.mac_id, fact.file_type, None)
                rank = next((i for i, h in enumerate(hits, 1) if h.file_path == path and h.start_line <= fact.line <= h.end_line), None)
                ranks.setdefault(fact.mac_id, []).append(rank)
            flat = [r for rs in ranks.values() for r in rs]
            top1 = sum(r == 1 for r in flat)
            top5 = sum(r is not None for r in flat)
            worst = min(sum(r == 1 for r in rs) / len(rs) for rs in ranks.values())
            print(f"{embedder.name}: top 1 {top1}/{len(flat)} ({top1 / len(flat):.1%}), top 5 {top5}/{len(flat)} "
                  f"({top5 / len(flat):.1%}); worst device top 1 {worst:.0%}")
    finally:
        drop_databases("bench_recall")


if __name__ == "__main__":
    main()
