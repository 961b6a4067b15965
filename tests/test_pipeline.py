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


def test_a_failing_document_is_skipped_and_the_rest_of_its_chunk_kept(demo_study, tfidf_model, nlp, tmp_path, break_segment):
    folder = demo_study(["A01", "B08", "C06"])
    break_segment("B08", DiscourseError("cannot segment", "B08"))
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


class ConstantModel:
    """A stand-in classifier: the same probabilities for every excerpt (these tests are about the cache)."""

    codes = ["a", "b"]
    thresholds_ = [0.5, 0.5]

    def embed(self, texts):
        return None

    def predict_proba(self, texts, embeddings=None):
        import numpy as np

        return np.full((len(texts), 2), 0.3)

    def codes_from_proba(self, P):
        return [[] for _ in P]


def _one_doc_study(tmp_path, text, speakers, name="s1"):
    from discourse.manifest import manifest_for_paths

    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    spk = tmp_path / "speakers.csv"
    spk.write_text("doc_id,speaker,role\n" + "".join(f"*,{s},{r}\n" for s, r in speakers), encoding="utf-8")
    return read_study(manifest_for_paths([path]), read_speakers(spk))


def test_a_speaker_table_change_that_moves_turn_boundaries_is_not_served_stale(nlp, tmp_path):
    text = ("Interviewer: How was it?\nR: It was a hard time for all of us.\n"
            "Mum: I think so too, it was really hard for me as well.\n")
    work = tmp_path / "w"
    before = _one_doc_study(tmp_path, text, [("R", "service user")])
    pred, _ = pipeline.classify_study(before, ConstantModel(), "k", lambda: nlp, work)
    assert pred.text.tolist() == ["It was a hard time for all of us.\nMum: I think so too, it was really hard for me as well."]
    after = _one_doc_study(tmp_path, text, [("R", "service user"), ("Mum", "carer")])
    pred, stats = pipeline.classify_study(after, ConstantModel(), "k", lambda: nlp, work)
    assert stats["reused"] == 0
    assert list(zip(pred.speaker, pred.text)) == [("R", "It was a hard time for all of us."),
                                                  ("Mum", "I think so too, it was really hard for me as well.")]


def test_the_cache_key_follows_the_segmenter_version(tmp_path, monkeypatch):
    from importlib import metadata

    import discourse.segment as segment

    study = _one_doc_study(tmp_path, "Interviewer: Why?\nR: Because it matters to us all.\n", [("R", "service user")])
    doc, turns = study.documents[0], study.turns
    key = pipeline.document_key(doc, turns, "k", pipeline.SegmentSettings())
    fingerprint = segment.segmenter_fingerprint("parser")
    assert f"segment {segment.SEGMENT_VERSION}" in fingerprint and f"spacy {metadata.version('spacy')}" in fingerprint
    assert f"{segment.SPACY_MODEL} {metadata.version(segment.SPACY_MODEL)}" in fingerprint
    monkeypatch.setattr(pipeline, "segmenter_fingerprint", lambda method: fingerprint + " (another spaCy)")
    assert pipeline.document_key(doc, turns, "k", pipeline.SegmentSettings()) != key
    monkeypatch.setattr(segment, "SEGMENT_VERSION", segment.SEGMENT_VERSION + 1)
    assert segment.segmenter_fingerprint.__wrapped__("parser") != fingerprint


def test_re_keying_a_document_keeps_other_documents_whose_ids_share_its_start(nlp, tmp_path):
    from discourse.manifest import manifest_for_paths

    names = ["P1", "P1.v2", "P[1]"]
    for n in names:
        (tmp_path / f"{n}.txt").write_text("Interviewer: How was it?\nR: It was a hard time for all of us.\n")
    man = manifest_for_paths([tmp_path / f"{n}.txt" for n in names])
    assert sorted(man.doc_id) == sorted(names)
    work = tmp_path / "w"
    pipeline.classify_study(read_study(man, read_speakers(None)), ConstantModel(), "k", lambda: nlp, work, chunk_docs=1)
    with open(tmp_path / "P1.txt", "a") as f:
        f.write("R: More words here to change it.\n")
    _, stats = pipeline.classify_study(read_study(man, read_speakers(None)), ConstantModel(), "k", lambda: nlp, work)
    assert stats["classified"] == 1 and stats["reused"] == 2
    saved = sorted(p.name.rsplit(".", 2)[0] for p in (work / "docs").glob("*.parquet"))
    assert saved == sorted(names)


def test_an_unexpected_error_in_one_document_is_one_line_naming_it(demo_study, nlp, tmp_path, break_segment):
    folder = demo_study(["A01", "B08"])
    break_segment("B08", KeyError("speaker"))
    study = _study(folder)
    pred, stats = pipeline.classify_study(study, ConstantModel(), "k", lambda: nlp, tmp_path / "w", chunk_docs=8)
    assert set(pred.doc_id) == {"A01"} and stats["classified"] == 1
    assert study.skipped == [("B08", "B08: internal error: KeyError: 'speaker'")]
