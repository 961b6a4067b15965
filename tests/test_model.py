"""The classifier with the real encoder on small slices of the corpus."""

import json
from pathlib import Path

import numpy as np
import pytest

from discourse.codebook import codebook_from_dict
from discourse.coded import read_coded
from discourse.errors import DiscourseError
from discourse.model import DiscourseClassifier, adapt_priors, best_threshold

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(book):
    df = read_coded(ROOT / "corpora" / "training" / "train.csv", book.ids)
    return df[df["batch"].isin(["b01", "b02", "b03"])].reset_index(drop=True)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from discourse.embed import Encoder

    return Encoder(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def fitted(small, encoder, book):
    # the frozen encoder (tests/test_tune.py covers tuning)
    return DiscourseClassifier(book.ids, encoder=encoder, tune_layers=0).fit(small["text"], small["codes"], groups=small["batch"])


def test_encoder_is_offline_cached_and_deterministic(encoder, tmp_path):
    from discourse.embed import Encoder

    texts = ["We answer to the people who use us.", "The board meets monthly.", "We answer to the people who use us."]
    X = encoder.encode(texts)
    assert X.shape == (3, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert np.array_equal(X[0], X[2])
    again = Encoder(cache_dir=encoder.cache.path.parent)
    again._model = again._onnx = "must not be loaded"  # every vector comes from the cache
    assert np.array_equal(again.encode(texts[:2]), X[:2])


def test_fit_predict_shapes_and_sense(fitted):
    texts = [
        "If people aren't happy with what we give them, they should be able to take their custom elsewhere, like any shop.",
        "Sitting on that panel gave me my confidence back, honestly, it got me out of the house.",
        "The meeting was moved to Thursday because the room was booked.",
    ]
    P = fitted.predict_proba(texts)
    assert P.shape == (3, 6) and ((P >= 0) & (P <= 1)).all()
    codes = fitted.codes
    assert P[0, codes.index("consumer")] > 0.5
    assert P[1, codes.index("therapeutic")] > 0.5
    assert P[2].max() < 0.5
    assert fitted.predict(texts)[2] == []
    assert 0 < fitted.cv_["macro_f1"] <= 1 and fitted.cv_["grouped_by"] == "groups"
    assert len(fitted.thresholds_) == 6


def test_predict_table_shows_encoding_progress_only_when_asked(fitted, capfd):
    import pandas as pd

    from discourse.predict import predict_table

    df = pd.DataFrame({"text": ["The carers' forum wrote to the board about the closure.", "Nobody asked us first."]})
    quiet, _ = predict_table(df, fitted)
    assert capfd.readouterr().err == ""
    df2 = pd.DataFrame({"text": ["A new text, so the encoder runs again.", "And another one for the bar."]})
    shown, _ = predict_table(df2, fitted, progress=True)
    assert "Batches" in capfd.readouterr().err  # sentence-transformers' bar, on stderr
    assert quiet.shape == shown.shape


def test_adapt_table_moves_probabilities_to_the_tables_mix(fitted, small):
    import copy

    import pandas as pd

    from discourse.errors import DiscourseError
    from discourse.predict import adapt_table, predict_table

    uncoded = small[small["codes"].map(len) == 0].head(30)["text"].tolist()
    table, _ = predict_table(pd.DataFrame({"text": uncoded + [""]}), fitted)
    adapted, prevalence = adapt_table(table, fitted)
    p = [f"p_{c}" for c in fitted.codes]
    assert list(prevalence) == fitted.codes and adapted[p].iloc[-1].isna().all()
    assert (adapted[p].iloc[:-1].mean() <= table[p].iloc[:-1].mean() + 1e-9).all()  # all uncoded: every code goes down
    assert adapted[p].iloc[:-1].mean().to_numpy() == pytest.approx(list(prevalence.values()), abs=1e-3)
    old = copy.copy(fitted)
    old.info_ = {}
    with pytest.raises(DiscourseError, match="retrain"):
        adapt_table(table, old)


def test_out_of_fold_probabilities_are_the_evidence_of_the_cv_metrics(fitted, small):
    from discourse.evaluate import agreement_table, to_matrix

    P, folds = fitted.cv_proba_, fitted.cv_folds_
    assert P.shape == (len(small), 6) and folds.shape == (len(small),)
    for f in np.unique(folds):  # grouped: a batch is scored in one fold only
        assert set(small["batch"][folds == f]).isdisjoint(small["batch"][folds != f])
    table = agreement_table(to_matrix(small["codes"], fitted.codes), P >= np.asarray(fitted.thresholds_), fitted.codes)
    for code, row in fitted.cv_["per_code"].items():
        assert table.set_index("code").loc[code, "f1"] == pytest.approx(row["f1"], abs=1e-4)


def test_nested_cv_scores_each_fold_with_thresholds_chosen_on_the_others(fitted):
    from discourse.model import _nested_metrics

    # fold 0's codes score 2 against 0 for the rest; fold 1's score 4 against 2. One threshold on all scores
    # takes every 2 as coded (F1 0.8); chosen on the other fold alone, it misses all of fold 0's codes and
    # takes all of fold 1's excerpts: 10 right, 10 wrong, 10 missed, F1 0.5.
    y = np.array([1] * 10 + [0] * 10 + [1] * 10 + [0] * 10)
    oof = np.array([2.0] * 10 + [0.0] * 10 + [4.0] * 10 + [2.0] * 10)
    folds = np.array([0] * 20 + [1] * 20)
    nested = _nested_metrics(oof[:, None], y[:, None], folds, ["a"])
    assert nested["per_code"]["a"]["f1"] == pytest.approx(0.5, abs=1e-4)
    assert nested["per_code"]["a"]["recall"] == pytest.approx(0.5, abs=1e-4)
    assert 0 < fitted.cv_["nested"]["macro_f1"] <= 1 and set(fitted.cv_["nested"]["per_code"]) >= set(fitted.codes)


def test_save_load_round_trip_and_integrity(fitted, book, tmp_path, encoder):
    folder = fitted.save(tmp_path / "m", codebook=book)
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("codebook", "codebook_sha256", "codes", "encoder", "training_data_sha256", "thresholds",
                "cross_validation", "versions", "created", "files"):
        assert key in manifest
    loaded = DiscourseClassifier.load(folder, codebook=book, encoder=encoder)
    texts = ["Users are partners at the table with the GPs and carers."]
    assert np.allclose(loaded.predict_proba(texts), fitted.predict_proba(texts))
    # another codebook is refused, naming both
    other = codebook_from_dict({"name": "other", "codes": [{"id": "x", "definition": "x"}]})
    with pytest.raises(DiscourseError, match="codebook 'sui-discourses'.*not with 'other'"):
        DiscourseClassifier.load(folder, codebook=other, encoder=encoder)
    # a changed estimator file is refused
    est = folder / "estimator.skops"
    est.write_bytes(est.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DiscourseError, match="does not match the sha256"):
        DiscourseClassifier.load(folder, encoder=encoder)


def test_training_data_errors(encoder):
    codes = ["a", "b"]
    with pytest.raises(DiscourseError, match="not in the codebook: zzz"):
        DiscourseClassifier(codes, config=None, features="tfidf").fit(["x y z"] * 12, [["a"], ["zzz"]] * 6)
    with pytest.raises(DiscourseError, match=r"at least 5 coded examples.*b \(2\)"):
        DiscourseClassifier(codes, features="tfidf").fit(["text"] * 12, [["a"]] * 10 + [["b"]] * 2)


def test_threshold_and_prior_helpers():
    y = np.array([0] * 80 + [1] * 20)
    p = np.concatenate([np.linspace(0, 0.4, 80), np.linspace(0.6, 1, 20)])
    assert 0.4 <= best_threshold(y, p) <= 0.6
    rng = np.random.default_rng(0)
    # probabilities calibrated for a 50% prior, corpus has 10%: EM recovers the lower prevalence
    truth = rng.random(4000) < 0.1
    scores = np.where(truth, rng.normal(1, 1, 4000), rng.normal(-1, 1, 4000))
    P = 1 / (1 + np.exp(-2 * scores))
    Q, pi = adapt_priors(P[:, None], np.array([0.5]))
    assert abs(pi[0] - 0.1) < 0.03 and Q.mean() < P.mean()


@pytest.fixture(scope="module")
def local_model(tmp_path_factory, linked_minilm):
    """A small model trained with a local encoder folder (links to MiniLM's files), saved; (model folder, encoder folder)."""
    from discourse.embed import Encoder
    from discourse.model import ModelConfig

    tmp = tmp_path_factory.mktemp("local")
    folder = linked_minilm(tmp / "encoders" / "my-encoder")
    texts = [f"We talk about item {i} and the {'budget' if i % 2 else 'staff'} today." for i in range(20)]
    codes = [["a"] if i % 2 else ["b"] for i in range(20)]
    config = ModelConfig(features="embedding", tune_layers=0, cv_folds=2, sentence_max=False)
    model = DiscourseClassifier(["a", "b"], encoder=Encoder(str(folder), cache_dir=tmp / "cache"), config=config)
    return model.fit(texts, codes).save(tmp / "model"), folder


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def test_a_local_encoder_is_found_at_its_recorded_folder(local_model, tmp_path, monkeypatch, linked_minilm):
    import shutil

    saved, folder = local_model
    model_dir = tmp_path / "model"
    shutil.copytree(saved, model_dir)
    enc = json.loads((model_dir / "manifest.json").read_text())["encoder"]
    assert list(enc)[:3] == ["name", "path", "id"] and enc["name"] == "my-encoder"
    assert enc["path"] == str(folder.resolve())
    monkeypatch.chdir(tmp_path)  # not where the encoder is
    assert DiscourseClassifier.load(model_dir).encoder.path == folder.resolve()
    # a model saved before the folder was recorded finds it by name in the current directory...
    _edit_manifest(model_dir, lambda m: m["encoder"].pop("path"))
    monkeypatch.chdir(folder.parent)
    assert DiscourseClassifier.load(model_dir).encoder.path == folder.resolve()
    # ...and another folder of that name, its files of the same sizes, is not taken for it
    config = (folder / "config.json").read_bytes()
    other = linked_minilm(tmp_path / "elsewhere" / "my-encoder", {"config.json": config.replace(b"0.1", b"0.2", 1)})
    assert (other / "config.json").stat().st_size == len(config) and (other / "config.json").read_bytes() != config
    monkeypatch.chdir(other.parent)
    with pytest.raises(DiscourseError, match="trained with encoder my-encoder-.* but my-encoder-.* is in use"):
        DiscourseClassifier.load(model_dir)
    # a model that identified it by file sizes only (older versions) is told to retrain, whichever folder it finds
    from discourse.encoders import _fingerprint

    _edit_manifest(model_dir, lambda m: m["encoder"].update(id=f"my-encoder-{_fingerprint(folder)}"))
    with pytest.raises(DiscourseError, match="older version.*retrain"):
        DiscourseClassifier.load(model_dir)


def test_a_missing_local_encoder_folder_is_one_clear_error(local_model, tmp_path):
    import shutil

    saved, folder = local_model
    model_dir = tmp_path / "model"
    shutil.copytree(saved, model_dir)
    gone = str(tmp_path / "gone" / "my-encoder")
    _edit_manifest(model_dir, lambda m: m["encoder"].update(path=gone))
    with pytest.raises(DiscourseError) as err:
        DiscourseClassifier.load(model_dir)
    assert f"needs its encoder folder at {gone}" in err.value.line() and "\n" not in err.value.line()


def test_the_manifest_records_the_thread_count_of_training(local_model, tmp_path):
    import shutil

    import torch

    saved, _ = local_model
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["reproducibility"] == {"torch_threads": torch.get_num_threads()}
    keys = list(manifest)
    assert keys.index("training_data_sha256") < keys.index("reproducibility") < keys.index("versions")
    model_dir = tmp_path / "model"
    shutil.copytree(saved, model_dir)
    _edit_manifest(model_dir, lambda m: m.pop("reproducibility"))  # as models saved before it
    assert DiscourseClassifier.load(model_dir).predict_proba(["The budget, today."]).shape == (1, 2)
