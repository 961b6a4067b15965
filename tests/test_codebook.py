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
