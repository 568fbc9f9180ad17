"""The bundled model as an int8 ONNX graph: about 3x faster than PyTorch on CPU.

No export comes with the wheel and nothing may be downloaded, so the first
use exports the bundled PyTorch weights to ONNX (``torch.onnx``), quantises
the weights to int8 (``onnxruntime.quantization``, dynamic) and caches the
file under ``$WAREHOUSE_HOME/models``, named after a digest of the source
weights and the library versions, written atomically. Inference is plain
onnxruntime plus the model's own fast tokenizer, with the same mean pooling
and normalisation as the sentence-transformers pipeline. The vectors differ
slightly from PyTorch's (cosine 0.88-0.97 on test texts, from the int8 weights alone), which is why chunks
embedded this way carry a different model name and why the recall test runs
on this backend too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

MAX_TOKENS = 256
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _digest(model_dir: Path) -> str:
    import onnxruntime
    import torch

    digest = hashlib.sha256(f"torch {torch.__version__} onnxruntime {onnxruntime.__version__}".encode())
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        digest.update((model_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def export_int8(model_dir: Path, cache_dir: Path) -> Path:
    """The int8 ONNX file for ``model_dir``, exported into ``cache_dir`` unless it is there already."""
    target = cache_dir / f"all-MiniLM-L6-v2-int8-{_digest(model_dir)}.onnx"
    if target.exists():
        return target
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    sample = AutoTokenizer.from_pretrained(str(model_dir))(["a sample", "a longer sample sentence"], padding=True,
                                                           return_tensors="pt")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        full = Path(work) / "model.onnx"
        axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
        # The legacy (TorchScript) exporter needs no extra packages; its tracer warnings are about
        # shape-dependent branches in attention masking, checked harmless: the fp32 export matched
        # PyTorch to cosine 1.0 on padded, unpadded and 240-token batches.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(LastHiddenState(model), tuple(sample[name] for name in INPUTS), str(full),
                              input_names=list(INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        quantised = Path(work) / "model-int8.onnx"
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process applies to vision models
        try:
            quantize_dynamic(str(full), str(quantised), weight_type=QuantType.QInt8)
        finally:
            logging.disable(previous)
        os.replace(quantised, target)  # atomic: a concurrent reader sees the whole file or none
    return target


class Int8Model:
    """``encode`` like a SentenceTransformer's, on the int8 ONNX graph."""

    def __init__(self, model_dir: Path, cache_dir: Path):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = export_int8(model_dir, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()

    def encode(self, texts: list[str], batch_size: int = 64, normalize_embeddings: bool = True, **_ignored) -> np.ndarray:
        # Longest first, so each batch pads to similar lengths (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            feed = {name: np.array([getattr(e, attr) for e in encoded], dtype=np.int64)
                    for name, attr in zip(INPUTS, ("ids", "attention_mask", "type_ids"))}
            hidden = self.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            if normalize_embeddings:
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled
        return out


def load_int8(model_dir: Path, cache_dir: Path) -> Int8Model:
    """The int8 model, exporting it on first use."""
    return Int8Model(Path(model_dir), Path(cache_dir))
