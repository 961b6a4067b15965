"""The encoder's identity, its embedding cache and its files in the cache folder.

Uses the small packaged all-MiniLM-L6-v2 encoder (and small stand-in encoder
folders), and the session's private cache (tests/conftest.py).
"""

import importlib.metadata
import json
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from discourse import embed, encoders
from discourse.embed import EmbeddingCache, Encoder

ROOT = Path(__file__).resolve().parent.parent


def _fake_encoder(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 4}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


# --- identity (fix: a tuned copy of the same sizes shared the original's id) ----------------------------------


def test_a_local_encoder_is_identified_by_its_files_contents(tmp_path):
    from discourse.onnx_backend import model_dir

    a = _fake_encoder(tmp_path / "a" / "enc", b"\x00" * 64)
    b = _fake_encoder(tmp_path / "b" / "enc", b"\x01" * 64)  # same names and sizes, other weights
    ea, eb = Encoder(str(a), cache_dir=tmp_path / "cache"), Encoder(str(b), cache_dir=tmp_path / "cache")
    assert ea.name == eb.name == "enc"
    assert ea.id != eb.id
    assert ea.cache.path != eb.cache.path
    assert model_dir(ea.cache_dir, ea.id) != model_dir(eb.cache_dir, eb.id)
    assert Encoder(str(a), cache_dir=tmp_path / "cache").id == ea.id  # stable
    assert ea.local_path == a.resolve() and not ea.packaged
    assert Encoder(use_cache=False).local_path is None and Encoder(use_cache=False).packaged


def test_a_local_encoders_file_digests_are_kept_by_size_and_mtime(tmp_path, monkeypatch):
    folder = _fake_encoder(tmp_path / "enc", b"\x00" * 64)
    cache = tmp_path / "cache"
    first = Encoder(str(folder), cache_dir=cache, use_cache=False).id
    assert stat.S_IMODE((cache / encoders.DIGESTS_FILE).stat().st_mode) == 0o600
    read = []
    real = encoders.sha256_file
    monkeypatch.setattr(encoders, "sha256_file", lambda p: read.append(p.name) or real(p))
    assert Encoder(str(folder), cache_dir=cache, use_cache=False).id == first and read == []  # nothing re-read
    (folder / "model.safetensors").write_bytes(b"\x02" * 64)
    assert Encoder(str(folder), cache_dir=cache, use_cache=False).id != first
    assert read == ["model.safetensors"]  # only the changed file
    (cache / encoders.DIGESTS_FILE).write_text("{not json")  # a damaged record is only a lost shortcut
    assert Encoder(str(folder), cache_dir=cache, use_cache=False).id != first


def test_packaged_encoders_keep_their_ids():
    """Models and embedding caches carry these ids: they are the names and sizes of the packages' files."""
    import hashlib

    enc = Encoder(use_cache=False)
    h = hashlib.sha256()
    for f in sorted(enc.path.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            h.update(f"{f.relative_to(enc.path)}:{f.stat().st_size}".encode())
    assert enc.id == f"all-MiniLM-L6-v2-{h.hexdigest()[:12]}"


@pytest.mark.slow
def test_the_shipped_models_encoder_keeps_its_id():
    manifest = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())
    assert Encoder("all-mpnet-base-v2", use_cache=False).id == manifest["encoder"]["adapter"]["base_id"]


# --- the embedding cache ----------------------------------------------------------------------------------------


def test_a_damaged_cache_file_is_set_aside_with_a_warning(tmp_path, capfd):
    path = tmp_path / "embeddings-x.sqlite"
    junk = os.urandom(4096)
    path.write_bytes(junk)
    cache = EmbeddingCache(tmp_path, "x")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "warning:" in err and "embeddings-x.sqlite.damaged" in err
    assert (tmp_path / "embeddings-x.sqlite.damaged").read_bytes() == junk
    cache.put([("k", np.ones(3, np.float32))])
    assert cache.get(["k"])["k"].tolist() == [1, 1, 1]


def test_a_cache_file_damaged_while_in_use_is_set_aside_and_the_run_goes_on(tmp_path, capfd):
    cache = EmbeddingCache(tmp_path, "x")
    cache.put([("k", np.ones(3, np.float32))])
    junk = os.urandom(8192)
    cache.path.write_bytes(junk)  # damaged after opening (a disk error, another program)
    assert cache.get(["k"]) == {}  # nothing to trust: encoded again
    assert (tmp_path / "embeddings-x.sqlite.damaged").read_bytes() == junk
    cache.put([("k", np.full(3, 2, np.float32))])
    assert cache.get(["k"])["k"].tolist() == [2, 2, 2]
    cache.path.write_bytes(junk)
    cache.put([("j", np.zeros(3, np.float32))])  # a put into a damaged file goes to a new one
    assert cache.get(["j"])["j"].tolist() == [0, 0, 0]
    err = capfd.readouterr().err
    assert err.count("warning:") == 2 and "Traceback" not in err


def test_new_cache_files_and_folders_are_private(tmp_path):
    folder = tmp_path / "new" / "cache"
    cache = EmbeddingCache(folder, "x")
    cache.put([("k", np.ones(3, np.float32))])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600


def test_a_lone_surrogate_is_hashed_and_encoded(tmp_path):
    enc = Encoder(cache_dir=tmp_path)
    X = enc.encode(["We sat on the board \ud800 together.", "ok"])
    assert X.shape == (2, 384)
    replaced = Encoder(use_cache=False).encode(["We sat on the board \ufffd together.", "ok"])
    assert np.array_equal(X, replaced)
    assert embed.text_key("a\ud800") != embed.text_key("a\ufffd")


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_encoding_nothing_loads_no_model(tmp_path, backend):
    if backend == "onnx-int8":
        pytest.importorskip("onnxruntime")
    enc = Encoder(backend=backend, cache_dir=tmp_path)
    X = enc.encode([])
    assert X.shape == (0, 384) and X.dtype == np.float32
    assert enc._model is None and enc._onnx is None
    assert not (tmp_path / "encoders").exists()  # no ONNX export


# --- the encoders folder ----------------------------------------------------------------------------------------


def test_temporary_folders_of_killed_builds_are_removed_after_an_hour(tmp_path):
    encoders = tmp_path / "encoders"
    old = encoders / ".all-MiniLM-L6-v2-0123456789ab-onnx-int8-v2-x1y2"
    fresh = encoders / ".mpnet-abc123"
    for d in (old, fresh):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "float.onnx").write_bytes(b"half an export")
    kept = encoders / "all-mpnet-base-v2"
    kept.mkdir()
    two_hours_ago = time.time() - 7200
    for p in (old / "sub" / "float.onnx", old / "sub", old, kept):
        os.utime(p, (two_hours_ago, two_hours_ago))
    Encoder(cache_dir=tmp_path, use_cache=False)
    assert sorted(p.name for p in encoders.iterdir()) == sorted([fresh.name, kept.name])


@pytest.fixture
def fake_mpnet_packages(tmp_path, monkeypatch):
    """Five installed 'packages' holding a small zip archive split in five, as the real ones hold all-mpnet-base-v2."""
    archive = tmp_path / "mpnet.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("all-mpnet-base-v2/modules.json", "[]")
        z.writestr("all-mpnet-base-v2/config.json", '{"hidden_size": 768}')
        z.writestr("all-mpnet-base-v2/model.safetensors", b"\x00" * 1000)
    data = archive.read_bytes()
    step = -(-len(data) // 5)
    parts = {}
    for i, name in enumerate(encoders.MPNET_PARTS):
        part = tmp_path / "site" / f"all-mpnet-base-v2.zip.{i:03d}"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(data[i * step:(i + 1) * step])
        parts[name] = part

    class Dist:
        version = "1.0"  # a test may set another, as an upgrade would

        def __init__(self, part):
            self.files, self.part = [Path(part.name)], part

        def locate_file(self, _):
            return self.part

    real = importlib.metadata.distribution
    monkeypatch.setattr(importlib.metadata, "distribution", lambda n: Dist(parts[n]) if n in parts else real(n))
    return Dist


def test_mpnet_unpacks_into_the_encoders_own_cache(tmp_path, fake_mpnet_packages):
    enc = Encoder("all-mpnet-base-v2", cache_dir=tmp_path / "mine", use_cache=False)
    assert enc.path == tmp_path / "mine" / "encoders" / "all-mpnet-base-v2"
    assert (enc.path / "modules.json").is_file() and enc.packaged and enc.local_path is None


def test_an_incomplete_mpnet_folder_is_unpacked_again(tmp_path, fake_mpnet_packages):
    target = tmp_path / "encoders" / "all-mpnet-base-v2"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # a copy that never finished: no modules.json
    assert encoders.packaged_mpnet(tmp_path) == target
    assert (target / "modules.json").is_file() and (target / "model.safetensors").stat().st_size == 1000
    assert sorted(p.name for p in target.parent.iterdir()) == ["all-mpnet-base-v2"]  # nothing left aside


def test_mpnet_is_unpacked_again_when_its_packages_change(tmp_path, fake_mpnet_packages):
    target = encoders.packaged_mpnet(tmp_path)
    first_id = encoders._fingerprint(target)
    (target / "config.json").write_text('{"hidden_size": 1}')  # a file only the old packages had
    assert encoders.packaged_mpnet(tmp_path) == target and (target / "config.json").read_text() == '{"hidden_size": 1}'
    fake_mpnet_packages.version = "2.0"  # pip install --upgrade of the parts
    assert encoders.packaged_mpnet(tmp_path) == target
    assert (target / "config.json").read_text() == '{"hidden_size": 768}' and "2.0" in (target / "packages.source").read_text()
    assert encoders._fingerprint(target) == first_id  # the record is not a model file: the encoder's id is its files'
    (target / "packages.source").unlink()  # unpacked before the record existed: unpacked again, once
    assert encoders.packaged_mpnet(tmp_path) == target and (target / "packages.source").is_file()


def test_two_processes_finishing_an_mpnet_unpack_at_once(tmp_path, fake_mpnet_packages, monkeypatch):
    target = tmp_path / "encoders" / "all-mpnet-base-v2"
    real = encoders._unpack_parts

    def other_process_first(parts, tmp):
        found = real(parts, tmp)
        (tmp.parent / ".mpnet-other").mkdir()
        other = real(parts, tmp.parent / ".mpnet-other")
        os.replace(other, target)  # the other process renames its copy into place first
        return found

    monkeypatch.setattr(encoders, "_unpack_parts", other_process_first)
    assert encoders.packaged_mpnet(tmp_path) == target and (target / "modules.json").is_file()
