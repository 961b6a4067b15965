"""Matching a second coder's codes to the test table by id."""

import pandas as pd
import pytest

from discourse.coded import read_coded, read_second_coding
from discourse.errors import DiscourseError

CODES = ["a", "b"]


@pytest.fixture
def first(tmp_path):
    p = tmp_path / "test.csv"
    pd.DataFrame({"id": ["t1", "t2", "t3", "t4"], "text": ["one", "two", "three", "four"],
                  "codes": ["a", "", "a;b", "b"]}).to_csv(p, index=False)
    return read_coded(p, CODES), p


def write(tmp_path, rows, name="second.csv"):
    p = tmp_path / name
    p.write_text(rows, encoding="utf-8")
    return p


def test_second_coding_keeps_the_first_tables_order_and_a_subset(tmp_path, first):
    df, path = first
    second = write(tmp_path, "id,codes,note\nt3,b,\nt1,a;b,x\n")
    out = read_second_coding(second, df, CODES, path)
    assert out.id.tolist() == ["t1", "t3"] and out.index.tolist() == [0, 2]
    assert out.second_codes.tolist() == [["a", "b"], ["b"]] and out.codes.tolist() == [["a"], ["a", "b"]]


@pytest.mark.parametrize("rows, needle", [
    ("id,codes\nt9,a\n", "1 id(s) are not in test.csv (first: t9)"),
    ("id,codes\nt1,a\nt1,b\n", "id t1 occurs more than once"),
    ("id,codes\nt1,c\n", "row 2: code(s) c are not in the codebook"),
    ("id,codes\n", "has no rows"),
    ("id,code\nt1,a\n", "missing column(s) codes"),
])
def test_bad_second_codings_name_the_file_and_the_fault(tmp_path, first, rows, needle):
    df, path = first
    second = write(tmp_path, rows)
    with pytest.raises(DiscourseError) as e:
        read_second_coding(second, df, CODES, path)
    assert needle in str(e.value) and "second.csv" in str(e.value)


def test_a_test_table_without_ids_cannot_be_matched(tmp_path):
    p = tmp_path / "noid.csv"
    pd.DataFrame({"text": ["one"], "codes": ["a"]}).to_csv(p, index=False)
    with pytest.raises(DiscourseError) as e:
        read_second_coding(write(tmp_path, "id,codes\nt1,a\n"), read_coded(p, CODES), CODES, p)
    assert "noid.csv" in str(e.value) and "no id column" in str(e.value)
