"""The rewrites of scripts/speech_study.py: seeded, and each changes only what it says it changes."""

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import speech_study as study  # noqa: E402

TEXT = ("We sat on the board, and it meant power for once. The trust's people listened -- really listened. "
        "I don't think that's tokenism, not this time. They asked us what the money should go on and then did it.")
FILLER_WORDS = {w for f in study.FILLERS for w in f.lower().split()}


def test_rewrites_are_the_same_on_every_run_and_differ_between_texts():
    for _, rewrite in study.REWRITES[1:]:
        assert rewrite(TEXT) == rewrite(TEXT)
    assert study.add_fillers(TEXT) != TEXT and study.add_repeats(TEXT) != TEXT
    assert study.add_fillers(TEXT + " Yes.") != study.add_fillers(TEXT) + " Yes."  # seeded by the text itself


def test_fillers_only_add_fillers_and_repeats_only_add_words_said_again():
    def words(t):
        return [w.strip(",.-").lower() for w in t.split() if w.strip(",.-")]

    filled = words(study.add_fillers(TEXT))
    assert len(filled) > len(words(TEXT))
    # the written words, in order, with only fillers between them
    assert [w for w in filled if w not in FILLER_WORDS] == [w for w in words(TEXT) if w not in FILLER_WORDS]
    repeated = iter(words(study.add_repeats(TEXT)))
    assert all(w in repeated for w in words(TEXT))  # the written words are a subsequence


def test_captions_have_no_capitals_or_punctuation_but_keep_every_word():
    captions = study.as_captions(TEXT)
    assert captions == captions.lower() and not re.search(r"[^\w\s']", captions)
    assert "don't" in captions and "trust's" in captions
    assert len(captions.split()) == len([w for w in TEXT.split() if re.search(r"\w", w)])


def test_hesitation_sounds_are_removed_and_words_kept():
    assert study.strip_hesitations("And, um, we went. Erm, he said no, really um.") == "And, we went. He said no, really."
    assert study.strip_hesitations("Um, I think the board, er... listened. Mm-hmm. Yes.") == "I think the board... listened. Yes."
    kept = "The ER team, you know, sort of like a drum, an umbrella and an errand."
    assert study.strip_hesitations(kept) == kept


def test_word_runs_only_split_long_text_without_a_sentence_end():
    words = [f"w{i}" for i in range(53)]
    runs = study.runs_without_punctuation(" ".join(words))
    assert [len(r.split()) for r in runs] == [13, 13, 13, 14] and " ".join(runs).split() == words
    assert study.runs_without_punctuation(TEXT) == study.SPLIT_SENTENCES(TEXT)
    assert len(study.runs_without_punctuation(" ".join(words[:20]))) == 1


def test_whole_turns_join_a_turns_excerpts_in_order_with_all_their_codes():
    pred = pd.DataFrame({"doc_id": ["a", "a", "a", "b"], "turn": [1, 1, 2, 1], "start": [10, 0, 30, 0],
                         "text": ["Second.", "First.", "Alone.", "Other."]})
    texts, codes = study.whole_turns(pred, [["consumer"], ["empowered"], [], ["stakeholder"]])
    assert texts == ["First. Second."] and codes == [["consumer", "empowered"]]
