"""The onnx-int8 encoder backend: export and quantize offline, agreement with torch, determinism, caches, errors, CLI.

Uses the small packaged all-MiniLM-L6-v2 encoder and the session's private cache
(tests/conftest.py points $DISCOURSE_CACHE at a temporary folder).
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discourse.embed import BACKENDS, Encoder, default_cache_dir
from discourse.errors import DiscourseError

ROOT = Path(__file__).resolve().parent.parent
needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime and onnx are not installed (pip install onnxruntime onnx)",
)

SENTENCES = [
    "We listen to people and they tell us what works for them.",
    "The trust board has two service user representatives who challenge the managers on every decision.",
    "Honestly it felt like a box-ticking exercise.",
    "Patients are customers, and customers expect a good service.",
    "ok",
    "",
    "   Leading and trailing spaces are stripped, as sentence-transformers does.   ",
]


def _real_texts(n: int = 60) -> list[str]:
    test = pd.read_csv(ROOT / "corpora" / "test" / "test.csv", keep_default_na=False)
    return SENTENCES + test["text"].tolist()[:n]


@pytest.fixture(scope="module")
def offline_built(tmp_path_factory):
    """Build the int8 model into the session cache with sockets refused; return the encoder and connection attempts."""
    import socket

    attempts = []
    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in this test")

    socket.socket.connect, socket.socket.connect_ex = refuse, refuse
    socket.create_connection = lambda *a, **k: refuse(None, a)
    try:
        enc = Encoder(backend="onnx-int8", use_cache=False)
        enc.encode(["warm up"])
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = saved
    return enc, attempts


@pytest.fixture(scope="module")
def onnx_enc(offline_built):
    return offline_built[0]


@pytest.fixture(scope="module")
def torch_enc():
    return Encoder(backend="torch", use_cache=False)


def test_backends_constant_and_unknown_backend():
    assert BACKENDS == ("torch", "onnx-int8")
    with pytest.raises(DiscourseError, match="unknown encoder backend 'tensorrt'"):
        Encoder(backend="tensorrt")


def test_missing_onnxruntime_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DiscourseError) as err:
        Encoder(backend="onnx-int8")
    assert "onnxruntime is not installed" in err.value.line() and "pip install" in err.value.line()
    assert "\n" not in err.value.line()
    Encoder(backend="torch")  # the torch backend does not need it


@pytest.mark.slow
@needs_onnxruntime
def test_export_and_quantize_offline_into_the_cache(offline_built):
    from discourse.onnx_backend import INFO_FILE, MODEL_FILE, model_dir, sha256_file

    enc, attempts = offline_built
    assert attempts == []
    folder = model_dir(default_cache_dir(), enc.id)
    assert folder == default_cache_dir() / "encoders" / f"{enc.id}-onnx-int8-v2"
    info = json.loads((folder / INFO_FILE).read_text())
    assert info["sha256"][MODEL_FILE] == sha256_file(folder / MODEL_FILE)
    assert info["recipe"] == "v2" and info["format"] == "discourse-onnx-int8/2"
    assert info["quantization"] == {"method": "quantize_dynamic", "per_channel": True, "weight_type": "QInt8",
                                    "reduce_range": True}
    assert info["probe_cosine_with_float"]["mean"] >= 0.95, info["probe_cosine_with_float"]  # MiniLM: about 0.99
    assert {"torch", "onnx", "onnxruntime"} <= set(info["versions"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([MODEL_FILE, INFO_FILE])  # no float model left
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    import onnx

    ops = {n.op_type for n in onnx.load(str(folder / MODEL_FILE)).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops  # really quantized
    assert (folder / MODEL_FILE).stat().st_size < 40e6  # int8: about a quarter of the 90 MB float export


@pytest.mark.slow
@needs_onnxruntime
def test_same_encoder_identity_different_cache_file(onnx_enc, torch_enc, tmp_path):
    assert onnx_enc.id == torch_enc.id and onnx_enc.name == torch_enc.name
    assert (onnx_enc.backend, torch_enc.backend) == ("onnx-int8", "torch")
    t = Encoder(backend="torch", cache_dir=tmp_path)
    o = Encoder(backend="onnx-int8", cache_dir=tmp_path)
    assert t.cache.path.name == f"embeddings-{t.id}.sqlite"  # unchanged: existing caches stay valid
    assert o.cache.path.name == f"embeddings-{t.id}-onnx-int8-v2.sqlite"  # the recipe is part of the name
    assert o.dim == t.dim == 384
    v_onnx = o.encode(SENTENCES[:2])
    v_torch = t.encode(SENTENCES[:2])
    assert not np.array_equal(v_onnx, v_torch)
    # each backend reads back its own vectors, not the other's
    assert np.array_equal(Encoder(backend="onnx-int8", cache_dir=tmp_path).encode(SENTENCES[:2]), v_onnx)
    assert np.array_equal(Encoder(backend="torch", cache_dir=tmp_path).encode(SENTENCES[:2]), v_torch)


@pytest.mark.slow
@needs_onnxruntime
def test_tokens_match_sentence_transformers_including_truncation(onnx_enc, torch_enc):
    st = torch_enc.model
    long_text = " ".join(["Involvement means a real say in how the service is run."] * 60)  # > 256 tokens
    runner = onnx_enc.onnx
    assert runner.max_seq_length == st.max_seq_length == 256
    for text in _real_texts(20) + [long_text]:
        expected = st.tokenizer(text.strip(), truncation=True, max_length=st.max_seq_length)["input_ids"]
        assert runner._tokens(text) == expected, text[:60]
    assert len(runner._tokens(long_text)) == 256


@pytest.mark.slow
@needs_onnxruntime
def test_int8_vectors_agree_with_torch_and_have_unit_norm(onnx_enc, torch_enc):
    texts = _real_texts(60)
    v = onnx_enc.encode(texts)
    r = torch_enc.encode(texts)
    assert v.dtype == np.float32 and v.shape == r.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * r).sum(axis=1)
    # measured on this encoder and corpus: mean 0.992, min 0.981 (all 346 test excerpts)
    assert cos.mean() >= 0.985 and cos.min() >= 0.97, (cos.mean(), cos.min())
    # and it is not the same computation: int8 differs from float
    assert np.abs(v - r).max() > 1e-4


@pytest.mark.slow
@needs_onnxruntime
def test_shipped_models_encoder_survives_quantization(torch_enc):
    """8-bit weights overflowed on processors without VNNI (all-mpnet-base-v2: mean cosine 0.04-0.52); 7-bit ones do not."""
    from discourse.model import DiscourseClassifier

    adapter = DiscourseClassifier.load(ROOT / "models" / "default", encoder=Encoder("all-mpnet-base-v2", use_cache=False)).adapter_
    texts = _real_texts(40)
    with tempfile.TemporaryDirectory() as cache:
        (Path(cache) / "encoders").mkdir()
        (Path(cache) / "encoders" / "all-mpnet-base-v2").symlink_to(Encoder("all-mpnet-base-v2", use_cache=False).path)
        o = Encoder("all-mpnet-base-v2", backend="onnx-int8", use_cache=False, cache_dir=cache, adapter=adapter).encode(texts)
    t = Encoder("all-mpnet-base-v2", use_cache=False, adapter=adapter).encode(texts)
    cos = (o * t).sum(axis=1)
    # measured on a 2-core AMD EPYC without VNNI, 120 test excerpts: mean 0.947, min 0.74 (8-bit weights: 0.52, -0.22)
    assert cos.mean() >= 0.9 and cos.min() >= 0.5, (cos.mean(), cos.min())


@pytest.mark.slow
@needs_onnxruntime
def test_a_model_that_fails_its_probe_is_refused_and_the_first_recipes_files_go(tmp_path, monkeypatch):
    from discourse import onnx_backend

    enc = Encoder(backend="onnx-int8", use_cache=False, cache_dir=tmp_path)
    v1 = tmp_path / "encoders" / f"{enc.id}-onnx-int8"
    v1.mkdir(parents=True)
    (v1 / "model.onnx").write_bytes(b"an 8-bit model")
    v1_vectors = tmp_path / f"embeddings-{enc.id}-onnx-int8.sqlite"
    v1_vectors.write_bytes(b"vectors of the 8-bit model")
    monkeypatch.setattr(onnx_backend, "PROBE_MIN_COSINE", 1.01)  # no int8 model reproduces float exactly
    with pytest.raises(DiscourseError) as err:
        enc.encode(["hello"])
    assert "does not reproduce the encoder on this processor" in err.value.line() and "--encoder-backend torch" in err.value.line()
    assert sorted(p.name for p in (tmp_path / "encoders").iterdir()) == [v1.name]  # nothing half-built, v1 untouched
    monkeypatch.setattr(onnx_backend, "PROBE_MIN_COSINE", 0.8)
    assert Encoder(backend="onnx-int8", use_cache=False, cache_dir=tmp_path).encode(["hello"]).shape == (1, 384)
    assert sorted(p.name for p in (tmp_path / "encoders").iterdir()) == [f"{enc.id}-onnx-int8-v2"]
    assert not v1_vectors.exists()


@pytest.mark.slow
@needs_onnxruntime
def test_same_texts_twice_give_identical_bytes(onnx_enc):
    texts = _real_texts(30)
    first = onnx_enc.encode(texts).tobytes()
    assert onnx_enc.encode(texts).tobytes() == first
    fresh = Encoder(backend="onnx-int8", use_cache=False)  # a new onnxruntime session
    assert fresh.encode(texts).tobytes() == first


@pytest.mark.slow
@needs_onnxruntime
def test_progress_bar_only_when_asked(onnx_enc, capfd):
    a = onnx_enc.onnx.encode(SENTENCES[:3])
    assert capfd.readouterr().err == ""
    b = onnx_enc.onnx.encode(SENTENCES[:3], progress=True)
    assert "encoding" in capfd.readouterr().err
    assert np.array_equal(a, b)


@pytest.mark.slow
@needs_onnxruntime
def test_order_and_neighbours_do_not_change_a_texts_vector(onnx_enc):
    texts = _real_texts(40)
    v = onnx_enc.encode(texts)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = onnx_enc.encode([texts[i] for i in perm])
    np.testing.assert_allclose(shuffled, v[perm], atol=1e-6)
    alone = np.vstack([onnx_enc.encode([t]) for t in texts[:8]])
    np.testing.assert_allclose(alone, v[:8], atol=1e-6)


@pytest.mark.slow
@needs_onnxruntime
def test_batched_runs_pool_over_the_mask(onnx_enc):
    """Padded batches (sorted by length) give nearly the vectors of single runs: padding is masked out."""
    texts = _real_texts(30)
    single = onnx_enc.onnx.encode(texts)
    batched = onnx_enc.onnx.encode(texts, batch_size=8)
    assert batched.shape == single.shape
    cos = (batched * single).sum(axis=1)
    # int8 activation ranges are per batch, so not identical (7-bit weights, measured: mean 0.99, min 0.93)
    assert cos.mean() > 0.98 and cos.min() > 0.9, (cos.mean(), cos.min())


@pytest.mark.slow
@needs_onnxruntime
def test_damaged_model_file_is_a_clear_error(onnx_enc, tmp_path, monkeypatch, run_cli):
    from discourse.onnx_backend import MODEL_FILE, model_dir

    src = model_dir(default_cache_dir(), onnx_enc.id)
    other = tmp_path / "cache"
    dst = model_dir(other, onnx_enc.id)
    shutil.copytree(src, dst)
    data = bytearray((dst / MODEL_FILE).read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    (dst / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(DiscourseError, match="damaged") as err:
        Encoder(backend="onnx-int8", cache_dir=other, use_cache=False).encode(["Anything at all."])
    assert str(dst) in err.value.line() and "delete" in err.value.line()
    (dst / MODEL_FILE).write_bytes(b"not an onnx model")  # truncated: same answer
    with pytest.raises(DiscourseError, match="damaged"):
        Encoder(backend="onnx-int8", cache_dir=other, use_cache=False).encode(["Anything at all."])


@pytest.mark.slow
@needs_onnxruntime
def test_two_processes_building_at_once_both_succeed(tmp_path):
    code = (
        "import sys; from discourse.embed import Encoder; "
        "v = Encoder(backend='onnx-int8', cache_dir=sys.argv[1], use_cache=False).encode(['We listen.']); "
        "print(v.shape)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err[-2000:]
        assert "(1, 384)" in out
    folders = list((tmp_path / "encoders").iterdir())
    assert [f.name for f in folders] == [f"{Encoder().id}-onnx-int8-v2"]  # one model, no temporary folder left
    from discourse.onnx_backend import read_info

    read_info(folders[0])  # sha256 verifies


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, offline_built):
    """A MiniLM model trained through the CLI with onnx-int8 embeddings (two batches of the training split)."""
    from discourse.cli import main

    folder = tmp_path_factory.mktemp("onnx-model")
    train = pd.read_csv(ROOT / "corpora" / "training" / "train.csv", keep_default_na=False)
    train[train.batch.isin(["b01", "b02"])].to_csv(folder / "train.csv", index=False)
    code = main(["train", str(folder / "train.csv"), "--encoder", "all-MiniLM-L6-v2", "--encoder-backend", "onnx-int8",
                 "--tune-layers", "0", "-o", str(folder / "model")])
    assert code == 0
    return folder / "model"


@pytest.mark.slow
@needs_onnxruntime
def test_cli_train_and_predict_with_onnx_int8(run_cli, small_model, tmp_path):
    manifest = json.loads((small_model / "manifest.json").read_text())
    assert manifest["encoder"]["backend"] == "onnx-int8" and manifest["encoder"]["name"] == "all-MiniLM-L6-v2"
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(5), "text": SENTENCES[:5]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    code, stdout, err = run_cli("predict", src, "--model", small_model, "--encoder-backend", "onnx-int8", "-o", out)
    assert code == 0, err
    df = pd.read_csv(out, keep_default_na=False)
    codes = ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]
    assert [c for c in df.columns if c.startswith("p_")] == [f"p_{c}" for c in codes]
    assert df.id.tolist() == list(range(5)) and len(df) == 5
    P = df[[f"p_{c}" for c in codes]].to_numpy(float)
    assert ((P >= 0) & (P <= 1)).all()
    # the backend is an execution choice: the same model runs with torch, with close probabilities
    out_t = tmp_path / "out_torch.csv"
    code, _, err = run_cli("predict", src, "--model", small_model, "--encoder-backend", "torch", "-o", out_t)
    assert code == 0, err
    Pt = pd.read_csv(out_t, keep_default_na=False)[[f"p_{c}" for c in codes]].to_numpy(float)
    assert np.abs(P - Pt).max() < 0.2 and not np.array_equal(P, Pt)


@pytest.mark.slow
@needs_onnxruntime
def test_cli_evaluate_and_classify_record_the_backend(run_cli, small_model, demo_study, tmp_path):
    ev = tmp_path / "ev"
    code, _, err = run_cli("evaluate", "--model", small_model, "--encoder-backend", "onnx-int8", "-o", ev)
    assert code == 0, err
    assert json.loads((ev / "summary.json").read_text())["encoder_backend"] == "onnx-int8"
    study = demo_study(["A01"])
    out = tmp_path / "run"
    args = ("classify", "--manifest", study / "manifest.csv", "--model", small_model, "-o", out)
    code, stdout, err = run_cli(*args, "--encoder-backend", "onnx-int8")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["model"]["encoder_backend"] == "onnx-int8"
    code, stdout, err = run_cli(*args, "--encoder-backend", "torch")  # the cached onnx-int8 document is not reused
    assert code == 0, err
    assert "(0 reused)" in stdout
    assert json.loads((out / "run.json").read_text())["model"]["encoder_backend"] == "torch"
    code, stdout, err = run_cli(*args, "--encoder-backend", "torch")
    assert "(1 reused)" in stdout


@pytest.mark.slow
@needs_onnxruntime
def test_cli_damaged_model_is_one_line_exit_2(run_cli, small_model, onnx_enc, tmp_path, monkeypatch):
    from discourse.onnx_backend import MODEL_FILE, model_dir

    cache = tmp_path / "cache"
    dst = model_dir(cache, onnx_enc.id)
    shutil.copytree(model_dir(default_cache_dir(), onnx_enc.id), dst)
    (dst / MODEL_FILE).write_bytes(b"damaged")
    monkeypatch.setenv("DISCOURSE_CACHE", str(cache))
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": SENTENCES[:2]}).to_csv(src, index=False)
    code, _, err = run_cli("predict", src, "--model", small_model, "--encoder-backend", "onnx-int8", "-o", tmp_path / "o.csv")
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "damaged" in err


def test_max_positions_leave_room_for_roberta_style_offsets(tmp_path):
    from discourse.encoders import max_positions

    for config, expected in [({"model_type": "bert", "max_position_embeddings": 512}, 512),
                             ({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
                             ({"model_type": "roberta", "max_position_embeddings": 514}, 512),
                             ({"model_type": "bert"}, None)]:
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert max_positions(tmp_path) == expected, config


@pytest.mark.slow
@needs_onnxruntime
def test_a_folder_without_a_length_is_cut_at_its_position_table(onnx_enc, tmp_path, linked_minilm):
    from discourse.onnx_backend import OnnxEncoder, model_dir

    tok_cfg = json.loads((onnx_enc.path / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = int(1e30)  # what transformers writes when a model states no length
    folder = linked_minilm(tmp_path / "noseq", {"sentence_bert_config.json": b'{"do_lower_case": false}',
                                               "tokenizer_config.json": json.dumps(tok_cfg).encode()})
    runner = OnnxEncoder(model_dir(default_cache_dir(), onnx_enc.id), folder)
    assert runner.max_seq_length == 512  # BERT's position table
    long_text = " ".join(["Service users sit on the board with the commissioners and the GPs."] * 60)
    assert len(runner._tokens(long_text)) == 512
    assert runner.encode([long_text]).shape == (1, 384)


@pytest.mark.slow
@needs_onnxruntime
def test_an_onnxruntime_failure_is_one_line(onnx_enc):
    from discourse.onnx_backend import OnnxEncoder, model_dir

    runner = OnnxEncoder(model_dir(default_cache_dir(), onnx_enc.id), onnx_enc.path)

    class Failing:
        def run(self, *a, **k):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : indices element out of data bounds\nmore")

    runner.session = Failing()
    with pytest.raises(DiscourseError) as err:
        runner.encode(["We listen."])
    line = err.value.line()
    assert "\n" not in line and "out of data bounds" in line and "--encoder-backend torch" in line


@pytest.mark.slow
@needs_onnxruntime
def test_modules_the_int8_runner_leaves_out_are_refused(onnx_enc, tmp_path, linked_minilm):
    from discourse.onnx_backend import OnnxEncoder, model_dir

    modules = json.loads((onnx_enc.path / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    folder = linked_minilm(tmp_path / "dense", {"modules.json": json.dumps(modules).encode()})
    (folder / "3_Dense").mkdir()
    (folder / "3_Dense" / "config.json").write_text('{"in_features": 384, "out_features": 256}')
    with pytest.raises(DiscourseError) as err:
        OnnxEncoder(model_dir(default_cache_dir(), onnx_enc.id), folder)
    assert "Transformer, mean Pooling and Normalize" in err.value.line() and "Dense" in err.value.line()
    with pytest.raises(DiscourseError, match="Dense"):  # refused before any export
        Encoder(str(folder), backend="onnx-int8", cache_dir=tmp_path / "cache", use_cache=False).encode(["x"])
    assert not (tmp_path / "cache" / "encoders").exists()


@pytest.mark.slow
@needs_onnxruntime
def test_export_shows_no_loading_bar(tmp_path, capfd):
    import warnings

    from transformers.utils import logging as hf_logging

    from discourse.onnx_backend import export_float

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hub's bars stay off ($HF_HUB_DISABLE_PROGRESS_BARS); transformers' are on
        hf_logging.enable_progress_bar()  # as in a process that has loaded no encoder yet
    try:
        export_float(Encoder(use_cache=False).path, tmp_path / "float.onnx")
    finally:
        hf_logging.disable_progress_bar()
    assert (tmp_path / "float.onnx").is_file()
    assert "Loading weights" not in capfd.readouterr().err
