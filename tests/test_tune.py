"""Tuning the encoder's top layers (full weights stored in low rank, or adapters), on the real MiniLM encoder and a slice of the corpus."""

import json
from pathlib import Path

import numpy as np
import pytest

from discourse.coded import read_coded
from discourse.embed import Encoder
from discourse.errors import DiscourseError
from discourse.model import DiscourseClassifier
from discourse.tune import ADAPTER_FILE, Adapter, TunedStates, TuneConfig, Tuner

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
TUNE = dict(tune_layers=2, tune_epochs=1, cv_folds=2)


@pytest.fixture(scope="module")
def tiny(book):
    """Forty excerpts from each of two batches: two grouped folds, every code present."""
    df = read_coded(ROOT / "corpora" / "training" / "train.csv", book.ids)
    df = df[df["batch"].isin(["b01", "b02"])]
    return df.groupby("batch").head(40).reset_index(drop=True)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):

    return Encoder(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tuned(tiny, encoder, book):
    return DiscourseClassifier(book.ids, encoder=encoder, **TUNE).fit(tiny["text"], tiny["codes"], groups=tiny["batch"])


def test_tuned_embeddings_from_cached_states_equal_the_merged_encoder(tuned, tiny, encoder):
    texts = tiny["text"].tolist()[:12]
    tuner = Tuner(encoder.model, TuneConfig(layers=2))
    H = tuner.hidden_states(texts)
    via_states = tuner.embed(tuned.adapter_, H)
    merged = tuned.encoder.encode(texts)  # the sentence-transformers model with the adapter merged in
    assert np.allclose(via_states, merged, atol=2e-4)
    frozen = encoder.encode(texts)
    assert np.allclose(tuner.embed(None, H), frozen, atol=2e-4)  # no adapter: the frozen encoder
    assert np.abs(merged - frozen).max() > 1e-3  # tuning moved the embeddings
    assert tuned.encoder.id.startswith(encoder.id + "+tuned-") and encoder.adapter is None


def test_tuned_features_in_fit_equal_what_the_tuned_model_embeds(tuned, tiny, encoder):
    """The classifier is fitted on excerpt and sentence-max vectors from cached states: the saved model's own."""
    texts = tiny["text"].tolist()[:12]
    assert tuned.config.sentence_max
    states = TunedStates(Tuner(encoder.model, TuneConfig(layers=2)), texts, sentence_max=True)
    X = states.features(tuned.adapter_, list(range(len(texts))))
    assert X.shape == (12, 2 * encoder.dim)
    assert np.allclose(X, tuned.embed(texts), atol=2e-4)
    d = encoder.dim
    assert not np.allclose(X[:, :d], X[:, d:])  # several excerpts have more than one sentence


def layers_of(adapter) -> set[str]:
    return {name.split(".")[2] for name in list(adapter.factors) + list(adapter.weights)}


def test_tuning_touches_only_the_top_layers_and_is_deterministic(tuned, tiny, encoder, book):
    assert layers_of(tuned.adapter_) == {"4", "5"}  # MiniLM has six layers; the top two are tuned
    stored = tuned.adapter_  # matrices as their change from the base at rank 64, the rest as values
    assert stored.factors and all(a.shape[0] == 64 == b.shape[1] and a.dtype == b.dtype == np.float16
                                  for a, b in stored.factors.values())
    assert stored.weights and all(w.ndim == 1 and w.dtype == np.float16 for w in stored.weights.values())
    again = DiscourseClassifier(book.ids, encoder=encoder, **TUNE).fit(tiny["text"], tiny["codes"], groups=tiny["batch"])
    assert again.adapter_.sha256 == tuned.adapter_.sha256
    assert again.thresholds_ == tuned.thresholds_


def test_low_rank_storage_keeps_the_tuned_embeddings(tiny, encoder):
    texts, Y = tiny["text"].tolist(), np.array([[c in codes for c in ("empowered", "consumer")] for codes in tiny["codes"]])
    whole = Tuner(encoder.model, TuneConfig(layers=1, rank=0, delta_rank=0, epochs=1))
    H = whole.hidden_states(texts)
    full, low = whole.fit(H, Y), Tuner(encoder.model, TuneConfig(layers=1, rank=0, delta_rank=16, epochs=1)).fit(H, Y)
    assert not full.factors and len(low.factors) == 6  # six matrices a layer: q, k, v, attention out, two feed-forward
    assert len(low.to_bytes()) < 0.4 * len(full.to_bytes())
    a, b = whole.embed(full, H), whole.embed(low, H)
    moved = np.abs(a - whole.embed(None, H)).max()
    assert moved > 1e-3  # tuning moved the embeddings, and rank 16 keeps where they moved to
    assert np.abs(a - b).max() < 0.1 * moved and (a * b).sum(axis=1).min() > 0.9999


def test_tuned_model_saves_loads_and_refuses_a_changed_adapter(tuned, tiny, book, tmp_path, encoder):
    folder = tuned.save(tmp_path / "m", codebook=book)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encoder"]["adapter"]["file"] == ADAPTER_FILE and ADAPTER_FILE in manifest["files"]
    assert manifest["encoder"]["id"] == tuned.encoder.id
    texts = tiny["text"].tolist()[:6]
    loaded = DiscourseClassifier.load(folder, encoder=encoder)  # the plain encoder gets the model's adapter
    assert loaded.encoder.id == tuned.encoder.id
    assert np.allclose(loaded.predict_proba(texts), tuned.predict_proba(texts), atol=1e-6)
    for name, (a, b) in tuned.adapter_.factors.items():  # read back exactly as fitted
        assert np.array_equal(loaded.adapter_.factors[name][0], a) and np.array_equal(loaded.adapter_.factors[name][1], b)
    # the weights read back from the file, not the shared embedding cache, give the fitted embeddings
    uncached = DiscourseClassifier.load(folder, encoder=Encoder(use_cache=False))
    assert np.allclose(uncached.encoder.encode(texts), tuned.encoder.encode(texts), atol=2e-4)
    by_name = DiscourseClassifier.load(folder)
    assert by_name.encoder.id == tuned.encoder.id
    data = bytearray((folder / ADAPTER_FILE).read_bytes())
    data[-1] ^= 1
    (folder / ADAPTER_FILE).write_bytes(bytes(data))
    with pytest.raises(DiscourseError, match="does not match the sha256"):
        DiscourseClassifier.load(folder, encoder=encoder)
    # a frozen model saved into the same folder removes the stale adapter
    frozen = DiscourseClassifier(book.ids, encoder=encoder, tune_layers=0, cv_folds=2)
    frozen.fit(tiny["text"], tiny["codes"], groups=tiny["batch"]).save(folder, codebook=book)
    assert not (folder / ADAPTER_FILE).exists()


def test_adapter_bytes_round_trip_and_damage():
    rng = np.random.default_rng(0)
    ad = Adapter({"encoder.layer.5.output.dense": (rng.normal(size=(8, 16)).astype(np.float32),
                                                     rng.normal(size=(4, 8)).astype(np.float32))}, 2.0)
    back = Adapter.from_bytes(ad.to_bytes())
    assert back.scale == 2.0 and back.sha256 == ad.sha256
    column_major = Adapter({"m": (np.asfortranarray(ad.factors["encoder.layer.5.output.dense"][0]),
                                  np.asfortranarray(ad.factors["encoder.layer.5.output.dense"][1]))}, 1.0)
    a, b = Adapter.from_bytes(column_major.to_bytes()).factors["m"]
    assert np.array_equal(a, column_major.factors["m"][0]) and np.array_equal(b, column_major.factors["m"][1])
    with pytest.raises(DiscourseError, match="not a readable encoder adapter"):
        Adapter.from_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "x.safetensors")


def test_tuned_encoder_runs_on_the_onnx_backend(tuned, tiny):
    """The adapter is merged before the ONNX export, so the fast backend runs the tuned weights."""
    texts = tiny["text"].tolist()[:5]
    fast = tuned.encoder.__class__(tuned.encoder.name, backend="onnx-int8", cache_dir=tuned.encoder.cache_dir,
                                   adapter=tuned.adapter_)
    assert fast.id == tuned.encoder.id
    X, ref = fast.encode(texts), tuned.encoder.encode(texts)
    frozen = tuned.encoder.__class__(tuned.encoder.name, backend="torch", cache_dir=tuned.encoder.cache_dir).encode(texts)
    assert np.mean(np.sum(X * ref, axis=1)) > np.mean(np.sum(X * frozen, axis=1))  # nearer the tuned than the frozen


def test_tuning_settings_are_checked(encoder):
    assert DiscourseClassifier(["a"], encoder=None, features="tfidf").config.tune_layers == 0  # nothing to tune
    with pytest.raises(DiscourseError, match="between 1 and 6"):
        Tuner(encoder.model, TuneConfig(layers=7))


def test_train_command_tunes_as_asked(run_cli, tiny, tmp_path):
    coded = tmp_path / "coded.csv"
    tiny.assign(codes=tiny["codes"].map(";".join)).to_csv(coded, index=False)
    code, out, err = run_cli("train", coded, "--encoder", "all-MiniLM-L6-v2", "--tune-layers", "1", "-o", tmp_path / "m")
    assert code == 0, err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["tune_layers"] == 1 and manifest["encoder"]["adapter"]["layers"] == 1
    assert layers_of(Adapter.from_bytes((tmp_path / "m" / ADAPTER_FILE).read_bytes())) == {"5"}
    assert manifest["config"]["sentence_max"] is True  # the default
    code, out, err = run_cli("train", coded, "--encoder", "all-MiniLM-L6-v2", "--tune-layers", "0", "--no-sentence-max",
                             "-o", tmp_path / "f")
    assert code == 0, err
    assert not (tmp_path / "f" / ADAPTER_FILE).exists()
    frozen = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert frozen["encoder"]["id"] == manifest["encoder"]["adapter"]["base_id"] and frozen["config"]["sentence_max"] is False
    code, out, err = run_cli("train", coded, "--encoder", "all-MiniLM-L6-v2", "--tune-layers", "1", "--seed", "7",
                             "-o", tmp_path / "s")
    assert code == 0, err
    seeded = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and seeded["config"]["seed"] == 7
    assert seeded["files"][ADAPTER_FILE] != manifest["files"][ADAPTER_FILE]  # another seed tunes other weights


def test_low_rank_adapter_mode(tiny, encoder, book):
    """rank 8: low-rank adapters on every linear map of the tuned layers, merged on load."""
    model = DiscourseClassifier(book.ids, encoder=encoder, tune_layers=1, tune_rank=8, tune_epochs=1, cv_folds=2)
    model.fit(tiny["text"], tiny["codes"], groups=tiny["batch"])
    ad = model.adapter_
    assert ad.factors and not ad.weights and layers_of(ad) == {"5"}
    a, b = next(iter(ad.factors.values()))
    assert a.shape[0] == b.shape[1] == 8
    assert Adapter.from_bytes(ad.to_bytes()).sha256 == ad.sha256
    texts = tiny["text"].tolist()[:8]
    tuner = Tuner(encoder.model, TuneConfig(layers=1, rank=8))
    assert np.allclose(tuner.embed(ad, tuner.hidden_states(texts)), model.encoder.encode(texts), atol=2e-4)
    assert np.abs(model.encoder.encode(texts) - encoder.encode(texts)).max() > 1e-3


def test_frozen_pass_runs_each_distinct_text_once_and_leaves_the_encoder_whole(encoder):
    texts = ["We sat on the board. It meant power, for once.", "Budgets put people in charge of their care.",
             "Budgets put people in charge of their care."]
    tuner = Tuner(encoder.model, TuneConfig(layers=2))
    states = TunedStates(tuner, texts, sentence_max=True)
    assert len(states.states) == 4  # two distinct excerpts and the first one's two sentences
    assert states.H[1] is states.H[2] and states.sentences_at[1] == [states.text_at[1]]
    assert all(not layer._forward_hooks for layer in tuner.auto.encoder.layer)  # the early stop is undone
    assert np.allclose(tuner.embed(None, states.H), encoder.encode(texts), atol=2e-4)


def st_modules():
    """sentence-transformers' module classes (their home moved in version 6)."""
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules
    return modules


@pytest.mark.parametrize("make", [
    lambda m, first: [first, m.Pooling(384, pooling_mode="cls"), m.Normalize()],
    lambda m, first: [first, m.Pooling(384, pooling_mode="mean"), m.Dense(384, 384), m.Normalize()],
    lambda m, first: [first, m.Pooling(384, pooling_mode=("mean", "max"))],
], ids=["cls-pooling", "dense", "mean+max"])
def test_tuner_refuses_an_encoder_whose_embedding_it_does_not_compute(encoder, make):
    """The tuner mean-pools the top layer; any other encoder would be fitted on features it never computes."""
    from sentence_transformers import SentenceTransformer

    other = SentenceTransformer(modules=make(st_modules(), encoder.model[0]), device="cpu")
    with pytest.raises(DiscourseError, match="needs Transformer, Pooling \\(mean\\)") as err:
        Tuner(other, TuneConfig(layers=2))
    assert str(err.value).startswith(f"{encoder.path}: ") and "\n" not in str(err.value)


def test_tuner_refuses_when_its_features_are_not_the_encoders(encoder, monkeypatch):
    """The probe check: layers run another way (here the padding mask lost) or failing are refused at once."""
    import torch

    from discourse import tune

    assert len(tune.PROBES) <= 3 and all(len(p.split()) <= 20 for p in tune.PROBES)  # cheap
    pooled = Tuner._pooled
    monkeypatch.setattr(Tuner, "_pooled", lambda self, top, hs, mask: pooled(self, top, hs, torch.ones_like(mask)))
    with pytest.raises(DiscourseError, match="does not reproduce this encoder's embeddings") as err:
        Tuner(encoder.model, TuneConfig(layers=2))
    assert str(err.value).startswith(f"{encoder.path}: ")

    def signature_changed(self, top, hs, mask):
        raise TypeError("forward() got an unexpected keyword argument")

    monkeypatch.setattr(Tuner, "_pooled", signature_changed)
    with pytest.raises(DiscourseError, match="cannot run this encoder's layers \\(TypeError"):
        Tuner(encoder.model, TuneConfig(layers=2))


def zeros(*shape):
    return np.zeros(shape, dtype=np.float16)


@pytest.mark.parametrize("factors, weights, message", [
    ({"encoder.layer.5.attention.self.query": (zeros(8, 384), zeros(384, 4))}, {}, "do not multiply"),
    ({"encoder.layer.5.attention": (zeros(8, 384), zeros(384, 8))}, {}, "BertAttention, not a linear map"),
    ({"encoder.layer.5.attention.self.query": (zeros(8, 100), zeros(384, 8))}, {}, "is \\(384, 384\\), the adapter's \\(384, 100\\)"),
    ({"encoder.layer.5.attention.self.query": (zeros(8), zeros(384, 8))}, {}, "do not multiply"),
    ({"encoder.layer.9.output.dense": (zeros(8, 1536), zeros(384, 8))}, {}, "no module encoder.layer.9"),
    ({}, {"encoder.layer.5.output.dense.bias": zeros(3)}, "is \\(384,\\), the adapter's \\(3,\\)"),
], ids=["ranks", "not-linear", "shape", "not-a-matrix", "no-module", "weight-shape"])
def test_an_adapter_that_does_not_fit_is_one_line_naming_its_file_and_changes_nothing(encoder, tmp_path, factors,
                                                                                       weights, message):
    import copy

    from discourse.tune import merge_adapter

    path = tmp_path / ADAPTER_FILE
    fits = {"encoder.layer.5.output.LayerNorm.bias": np.ones(384, dtype=np.float16)}  # would be set first
    path.write_bytes(Adapter(factors, 1.0, {**fits, **weights}).to_bytes())
    auto = copy.deepcopy(encoder.model[0].auto_model)
    before = {k: v.clone() for k, v in auto.state_dict().items()}
    with pytest.raises(DiscourseError, match=message) as err:
        merge_adapter(auto, Adapter.from_bytes(path.read_bytes(), path))
    assert str(err.value).startswith(f"{path}: the encoder adapter does not fit") and "\n" not in str(err.value)
    assert all(np.array_equal(v.numpy(), before[k].numpy()) for k, v in auto.state_dict().items())
