"""Codebooks: the codes an excerpt may carry, loaded from YAML. Any number of codes."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DiscourseError
from .tables import read_yaml

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


def _str_list(value, where: str, path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise DiscourseError(f"{where} must be a string or a list of strings", path)


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
        cid = raw.get("id")
        if not isinstance(cid, str) or not CODE_ID.match(cid):
            raise DiscourseError(
                f"code #{i} has id {cid!r}: ids are lower-case letters, digits and _ , starting with a letter",
                path,
            )
        if cid in seen:
            raise DiscourseError(f"duplicate code id '{cid}'", path)
        seen.add(cid)
        definition = raw.get("definition")
        if not isinstance(definition, str) or not definition.strip():
            raise DiscourseError(f"code '{cid}' has no definition", path)
        codes.append(
            Code(
                id=cid,
                label=str(raw.get("label") or cid),
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
