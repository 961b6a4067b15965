"""Sentence-level embedding features: splitting excerpts, max-pooling, and models saved before them."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
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


@pytest.mark.parametrize("text, expected", [
    # capitals outside ASCII start a sentence
    ("\u00c9milie ran the group for a year. \u00c9tienne took over the budget.",
     ["\u00c9milie ran the group for a year.", "\u00c9tienne took over the budget."]),
    ("Wir zahlten selbst. \u00dcber alles andere entschieden die anderen.",
     ["Wir zahlten selbst.", "\u00dcber alles andere entschieden die anderen."]),
    # \u2026 ends a sentence; \u00ab\u00bb and \u201e are quotes
    ("I don't know\u2026 Maybe the staff decided for us.", ["I don't know\u2026", "Maybe the staff decided for us."]),
    ("We asked them why. \u00bbNobody listens to us\u00ab was the answer.",
     ["We asked them why.", "\u00bbNobody listens to us\u00ab was the answer."]),
    ("He said \u00abStop now.\u00bb Then everyone went quiet.", ["He said \u00abStop now.\u00bb", "Then everyone went quiet."]),
    # an initialism ends a sentence only before a common first word
    ("I served in the U.S. Army for years. Then I came home.", ["I served in the U.S. Army for years.", "Then I came home."]),
    ("I moved to the U.S. Then I came home again.", ["I moved to the U.S.", "Then I came home again."]),
    # abbreviations in either case; "No." only before a number; an all-capital word is an acronym
    ("We talked to mr. Jones about the budget.", ["We talked to mr. Jones about the budget."]),
    ("The answer was No. We never got a say.", ["The answer was No.", "We never got a say."]),
    ("Look at No. 10 Downing Street for once.", ["Look at No. 10 Downing Street for once."]),
    ("I have MS. It makes every meeting hard.", ["I have MS.", "It makes every meeting hard."]),
    ("We had no choice, etc. The staff decided everything.", ["We had no choice, etc.", "The staff decided everything."]),
    ("The name was St. John's House. It closed in the end.", ["The name was St. John's House.", "It closed in the end."]),
])
def test_split_sentences_reads_unicode_capitals_quotes_and_abbreviations(text, expected):
    assert split_sentences(text) == expected


def test_the_corpora_split_as_the_shipped_model_was_trained():
    """models/default was trained (and tested) on these splits: a splitter change that moves any of them needs a
    retrained model. Fingerprints taken with the splitter the model was trained with."""
    for name, sha, count in [("training/train.csv", "adef6043410637e2", 5806), ("test/test.csv", "dbcebd7ffd013fe8", 808)]:
        texts = pd.read_csv(ROOT / "corpora" / name)["text"].astype(str)
        splits = [split_sentences(t) for t in texts]
        joined = "\x1e".join("\x1f".join(ss) for ss in splits)
        assert (hashlib.sha256(joined.encode()).hexdigest()[:16], sum(map(len, splits))) == (sha, count), name


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
