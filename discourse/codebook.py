"""Codebooks: the codes an excerpt may carry, loaded from YAML. Any number of codes."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DiscourseError
from .tables import read_yaml, shown

CODE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Code:
    id: str
    label: str
    definition: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Codebook:
    name: str
    codes: tuple[Code, ...] = field(default_factory=tuple)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.codes]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, code_id: str) -> Code:
        for c in self.codes:
            if c.id == code_id:
                return c
        raise KeyError(code_id)

    def to_dict(self) -> dict:
        return {"name": self.name, "codes": [_code_dict(c) for c in self.codes]}

    @property
    def sha256(self) -> str:
        """Hash of the codes' content, independent of YAML layout and comments."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _code_dict(code: Code) -> dict:
    d = asdict(code)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


CODE_KEYS = ("id", "label", "definition", "include", "exclude", "examples")


def _str_list(value, where: str, path) -> tuple[str, ...]:
    """Text or a list of texts; an item YAML read as something else is an error naming it."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict):
        raise DiscourseError(f"{where} must be text or a list of texts, not a mapping "
                             f"({shown(_as_written(value), 80)}): put text containing ': ' in quotes", path)
    items = value if isinstance(value, list) else [value]
    for n, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise DiscourseError(f"{where} item {n} {_not_text(item)}", path)
    return tuple(items)


def _as_written(value) -> str:
    """A parsed YAML value shown about as it was written (``P3: I felt listened to`` for a one-pair mapping)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _not_text(item) -> str:
    """Why a list item is not text, and what to do (the end of a message)."""
    if isinstance(item, dict):
        shown_item = shown(_as_written(item), 80)
        return (f"is not text: '{shown_item}' was read as a key and its value; put text containing ': ' in quotes, "
                f"e.g. - \"{shown_item}\"")
    if item is None:
        return "is empty: fill it in or remove it"
    if isinstance(item, bool):
        return f"was read as {str(item).lower()} (YAML reads yes, no, on, off so), not text: put it in quotes"
    if isinstance(item, (int, float)):
        return f"was read as the number {item}, not text: put it in quotes"
    return f"is not text ({shown(_as_written(item), 80)}): put it in quotes"


def _check_keys(raw: dict, cid: str, path) -> None:
    """A misspelt key (``inclusion:``, ``example:``) would be silently ignored."""
    for key in raw:
        if key not in CODE_KEYS:
            near = difflib.get_close_matches(str(key), CODE_KEYS, n=1, cutoff=0.6)
            keys = f"a code's keys are {', '.join(CODE_KEYS)}"
            hint = f"did you mean '{near[0]}'? ({keys})" if near else keys
            raise DiscourseError(f"code '{cid}' has an unknown key '{shown(key)}': {hint}", path)


def _code_id(raw: dict, i: int, path) -> str:
    cid = raw.get("id")
    if isinstance(cid, bool):
        raise DiscourseError(f"code #{i}'s id was read as {str(cid).lower()} (YAML reads yes, no, on, off so), not "
                             "text: put the id in quotes, e.g. id: \"on\"", path)
    if cid is None:
        raise DiscourseError(f"code #{i} has no id", path)
    if not isinstance(cid, str) or not CODE_ID.match(cid):
        raise DiscourseError(
            f"code #{i} has id {shown(repr(cid))}: ids are lower-case letters, digits and _ , starting with a letter",
            path,
        )
    return cid


def codebook_from_dict(data: dict, path: str | os.PathLike | None = None) -> Codebook:
    """Build and validate a codebook from parsed YAML/JSON."""
    if not isinstance(data, dict) or not isinstance(data.get("codes"), list):
        raise DiscourseError("a codebook needs a top-level 'codes:' list", path)
    if not data["codes"]:
        raise DiscourseError("the codebook has no codes", path)
    codes, seen = [], set()
    for i, raw in enumerate(data["codes"], start=1):
        if not isinstance(raw, dict):
            raise DiscourseError(f"code #{i} is not a mapping with id, label and definition", path)
        cid = _code_id(raw, i, path)
        _check_keys(raw, cid, path)
        if cid in seen:
            raise DiscourseError(f"duplicate code id '{cid}'", path)
        seen.add(cid)
        definition = raw.get("definition")
        if not isinstance(definition, str) or not definition.strip():
            raise DiscourseError(f"code '{cid}' has no definition", path)
        label = raw.get("label")
        if isinstance(label, (bool, dict, list)):
            raise DiscourseError(f"code '{cid}': label {_not_text(label)}", path)
        codes.append(
            Code(
                id=cid,
                label=str(label or cid),
                definition=" ".join(definition.split()),
                include=_str_list(raw.get("include"), f"code '{cid}': include", path),
                exclude=_str_list(raw.get("exclude"), f"code '{cid}': exclude", path),
                examples=_str_list(raw.get("examples"), f"code '{cid}': examples", path),
            )
        )
    name = data.get("name") or (Path(path).stem if path else "codebook")
    return Codebook(name=str(name), codes=tuple(codes))


def load_codebook(path: str | os.PathLike) -> Codebook:
    """Load a codebook YAML file; errors name the file (and the line for bad YAML)."""
    return codebook_from_dict(read_yaml(path, "codebook file"), path)


def default_codebook_path() -> Path:
    """The bundled codebook (corpora/codebook.yaml in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "corpora" / "codebook.yaml"
