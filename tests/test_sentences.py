"""Sentence-level embedding features: splitting excerpts, max-pooling, and models saved before them."""

import json
from pathlib import Path

import numpy as np
import pytest

from discourse.coded import read_coded
from discourse.model import DiscourseClassifier
from discourse.sentences import max_pool, sentence_index, split_sentences, with_sentence_max

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, expected", [
    ("We sat on the board. It meant power, for once.", ["We sat on the board.", "It meant power, for once."]),
    ('He said "no." Then we left the room.', ['He said "no."', "Then we left the room."]),
    ("Dr. Okafor came in late. She apologised to everyone.", ["Dr. Okafor came in late.", "She apologised to everyone."]),
    ("We went. And it worked, you know? I think so anyway.", ["We went. And it worked, you know?", "I think so anyway."]),
    ("It changed things for us. Yes.", ["It changed things for us. Yes."]),
    ("erm, well. we -- we tried it . . . and it sort of worked", ["erm, well. we -- we tried it . . . and it sort of worked"]),
    ("Yes.", ["Yes."]),
])
def test_split_sentences_keeps_every_word_in_sentences_of_three_words_or_more(text, expected):
    assert split_sentences(text) == expected
    assert " ".join(split_sentences(text)).split() == text.split()  # nothing lost, nothing added


def test_sentence_index_and_max_pool():
    distinct, index = sentence_index(["Alpha beta gamma. Delta epsilon zeta.", "Delta epsilon zeta."])
    assert distinct == ["Alpha beta gamma.", "Delta epsilon zeta."] and index == [[0, 1], [1]]
    V = np.array([[1.0, -2.0], [0.5, 3.0]])
    assert np.array_equal(max_pool(V, index), [[1.0, 3.0], [0.5, 3.0]])
    assert max_pool(V, []).shape == (0, 2)


@pytest.mark.slow
def test_with_sentence_max_on_the_real_encoder(tmp_path):
    from discourse.embed import Encoder

    enc = Encoder(cache_dir=tmp_path)
    texts = ["We pay for it, so we choose. And the power moved to us at last.", "The board meets monthly on Tuesdays."]
    X = with_sentence_max(texts, enc.encode)
    assert X.shape == (2, 2 * enc.dim) and X.dtype == np.float32
    parts = enc.encode(["We pay for it, so we choose.", "And the power moved to us at last."])
    assert np.allclose(X[0, enc.dim:], parts.max(axis=0))
    assert np.allclose(X[1, :enc.dim], X[1, enc.dim:])  # one sentence: its own maximum
    assert with_sentence_max([], enc.encode).shape == (0, 2 * enc.dim)


@pytest.mark.slow
def test_a_model_saved_before_sentence_features_loads_as_it_was_trained(book, tmp_path):
    from discourse.embed import Encoder

    df = read_coded(ROOT / "corpora" / "training" / "train.csv", book.ids)
    df = df[df["batch"].isin(["b01", "b02"])].groupby("batch").head(60)
    enc = Encoder(cache_dir=tmp_path / "cache")
    old = DiscourseClassifier(book.ids, encoder=enc, tune_layers=0, sentence_max=False, cv_folds=2)
    old.fit(df["text"], df["codes"], groups=df["batch"]).save(tmp_path / "m", codebook=book)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["config"]["sentence_max"]  # as written before the setting existed
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    loaded = DiscourseClassifier.load(tmp_path / "m", codebook=book, encoder=enc)
    assert loaded.config.sentence_max is False
    texts = df["text"].tolist()[:5]
    assert np.allclose(loaded.predict_proba(texts), old.predict_proba(texts))
