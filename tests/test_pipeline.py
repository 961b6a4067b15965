"""classify_study: chunks of documents, resuming, isolating a failing document (real spaCy, a TF-IDF model)."""

from pathlib import Path

import pandas as pd
import pytest

import discourse.pipeline as pipeline
from discourse.errors import DiscourseError
from discourse.manifest import read_manifest, read_speakers
from discourse.model import DiscourseClassifier, ModelConfig
from discourse.study import read_study

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tfidf_model():
    train = pd.read_csv(ROOT / "corpora" / "training" / "train.csv", keep_default_na=False)
    codes = ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]
    model = DiscourseClassifier(codes, config=ModelConfig(features="tfidf"))
    return model.fit(train["text"], [[c for c in s.split(";") if c] for s in train["codes"]], groups=train["batch"])


def _study(folder):
    return read_study(read_manifest(folder / "manifest.csv"), read_speakers(folder / "speakers.csv"))


def test_results_do_not_depend_on_chunk_size(demo_study, tfidf_model, nlp, tmp_path):
    folder = demo_study(["A01", "B08", "C06"])
    one, stats1 = pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "a", chunk_docs=1)
    all3, stats3 = pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "b", chunk_docs=8)
    pd.testing.assert_frame_equal(one, all3)
    assert stats1["classified"] == stats3["classified"] == 3
    assert set(stats1["seconds"]) == {"segment", "embed", "predict"} and stats1["seconds"]["segment"] > 0
    assert len(list((tmp_path / "b" / "docs").glob("*.parquet"))) == 3
    again, stats = pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "b")
    assert stats["reused"] == 3 and stats["classified"] == 0
    pd.testing.assert_frame_equal(again, all3)


def test_a_failing_document_is_skipped_and_the_rest_of_its_chunk_kept(demo_study, tfidf_model, nlp, tmp_path, monkeypatch):
    folder = demo_study(["A01", "B08", "C06"])
    real = pipeline.segment

    def fragile(turns, nlp, **kw):
        if (turns["doc_id"] == "B08").any():
            raise DiscourseError("cannot segment", "B08")
        return real(turns, nlp, **kw)

    monkeypatch.setattr(pipeline, "segment", fragile)
    study = _study(folder)
    pred, stats = pipeline.classify_study(study, tfidf_model, "k", lambda: nlp, tmp_path / "w", chunk_docs=8)
    assert set(pred.doc_id) == {"A01", "C06"} and stats["classified"] == 2
    assert [d for d, _ in study.skipped] == ["B08"] and "cannot segment" in study.skipped[0][1]
    with pytest.raises(DiscourseError, match="B08"):
        pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "s", strict=True)


def test_a_document_without_respondent_talk_is_saved_empty(demo_study, tfidf_model, nlp, tmp_path):
    folder = demo_study(["A01", "C06"])
    spk = pd.read_csv(folder / "speakers.csv", dtype=str)
    spk.loc[spk.doc_id == "C06", "role"] = "interviewer"  # nobody in C06 is coded
    spk.to_csv(folder / "speakers.csv", index=False)
    pred, stats = pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "w")
    assert set(pred.doc_id) == {"A01"} and stats["classified"] == 2
    again, stats = pipeline.classify_study(_study(folder), tfidf_model, "k", lambda: nlp, tmp_path / "w")
    assert stats["reused"] == 2
    pd.testing.assert_frame_equal(again, pred)
