import pytest

from discourse.codebook import load_codebook
from discourse.errors import DiscourseError


def write(tmp_path, text):
    p = tmp_path / "cb.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_bundled_codebook_has_the_six_codes():
    from discourse.codebook import default_codebook_path

    book = load_codebook(default_codebook_path())
    assert book.ids == ["empowered", "consumer", "stakeholder", "responsible", "therapeutic", "expertise"]
    assert all(c.definition and c.examples for c in book.codes)


def test_any_number_of_codes_and_a_stable_hash(tmp_path):
    text = "codes:\n" + "".join(f"  - id: c{i}\n    definition: code number {i}\n" for i in range(9))
    a = load_codebook(write(tmp_path, text))
    assert len(a) == 9 and a["c3"].label == "c3"
    b = load_codebook(write(tmp_path, "# a comment\n" + text))
    assert a.sha256 == b.sha256
    c = load_codebook(write(tmp_path, text.replace("code number 3", "code number three")))
    assert c.sha256 != a.sha256


@pytest.mark.parametrize(
    "text,message",
    [
        ("codes:\n  - id: a\n    definition: x\n  - id: a\n    definition: y\n", "duplicate code id 'a'"),
        ("codes:\n  - id: a\n    label: A\n", "code 'a' has no definition"),
        ("codes:\n  - id: a\n    definition: [unclosed\n", "bad YAML at line"),
        ("codes: []\n", "no codes"),
        ("name: x\n", "'codes:' list"),
        ("codes:\n  - id: Bad Id\n    definition: x\n", "ids are lower-case"),
    ],
)
def test_codebook_errors_name_the_file_and_the_problem(tmp_path, text, message):
    with pytest.raises(DiscourseError) as err:
        load_codebook(write(tmp_path, text))
    assert message in str(err.value) and "cb.yaml" in str(err.value)


@pytest.mark.parametrize(
    "text,needles",
    [
        ("codes:\n  - id: a\n    definition: x\ncodes:\n  - id: b\n    definition: y\n",
         ["line 4", "key 'codes' is given twice", "first at line 1"]),
        ("codes:\n  - id: a\n    definition: x\n    definition: y\n", ["line 4", "key 'definition' is given twice"]),
    ],
)
def test_a_key_given_twice_is_refused_not_silently_dropped(tmp_path, text, needles):
    with pytest.raises(DiscourseError) as err:
        load_codebook(write(tmp_path, text))
    assert "cb.yaml" in str(err.value) and all(n in str(err.value) for n in needles), str(err.value)


@pytest.mark.parametrize("key,suggestion", [("inclusion", "did you mean 'include'?"), ("example", "did you mean 'examples'?"),
                                            ("description", "did you mean 'definition'?"), ("notes", "a code's keys are")])
def test_an_unknown_key_in_a_code_is_refused_with_the_nearest_valid_one(tmp_path, key, suggestion):
    with pytest.raises(DiscourseError) as err:
        load_codebook(write(tmp_path, f"codes:\n  - id: a\n    definition: x\n    {key}: y\n"))
    assert f"code 'a' has an unknown key '{key}'" in str(err.value) and suggestion in str(err.value)


@pytest.mark.parametrize(
    "text,needles",
    [
        ("codes:\n  - id: a\n    definition: x\n    examples:\n      - I chose\n      - P3: I felt listened to\n",
         ["code 'a': examples item 2", "'P3: I felt listened to'", "in quotes"]),
        ("codes:\n  - id: a\n    definition: x\n    include:\n      - yes\n", ["include item 1", "put it in quotes"]),
        ("codes:\n  - id: on\n    definition: x\n", ["code #1's id", "put the id in quotes"]),
    ],
)
def test_values_yaml_reads_as_other_than_text_are_named_with_the_fix(tmp_path, text, needles):
    with pytest.raises(DiscourseError) as err:
        load_codebook(write(tmp_path, text))
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_quoted_items_and_ids_are_read(tmp_path):
    book = load_codebook(write(tmp_path, 'codes:\n  - id: "on"\n    definition: x\n    examples:\n      - "P3: I felt listened to"\n'))
    assert book.ids == ["on"] and book["on"].examples == ("P3: I felt listened to",)
