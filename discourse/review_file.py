"""The review file: a queue written for a person (XLSX with dropdowns, or CSV) and read back, validated."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .tables import atomic_path, excel_safe, normalise_xlsx, read_table, text_not_formulas, write_table

REVIEW_SHEET = "review"
INSTRUCTIONS_SHEET = "instructions"
YES = {"yes", "y", "1", "1.0"}
NO = {"no", "n", "0", "0.0"}
# Every column `audit select` writes is required (with the codes and p_<code>), except the reading aids
# context_before/context_after: nothing is stored from them. Any other column is refused: what is typed in it
# would be lost. model_sha256 (CSV) is optional: without it the probabilities are checked against the model.
REQUIRED_REVIEW = ("review_id", "sample", "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust", "text",
                   "model_codes", "notes", "reviewer")
OPTIONAL_REVIEW = ("context_before", "context_after", "model_sha256")
MODEL_KEY = "model manifest sha256"  # the provenance line (XLSX) that the CSV queue's model_sha256 column carries
SAMPLES = ("random", "uncertain")
PROBA_SLACK = 1e-4  # how far another machine's arithmetic may move a probability the model gives again

_WIDTHS = {"review_id": 8, "sample": 10, "excerpt_id": 12, "doc_id": 9, "start": 7, "end": 7, "speaker": 12,
           "role": 14, "trust": 8, "context_before": 40, "text": 70, "context_after": 40, "model_codes": 18,
           "notes": 32, "reviewer": 14}


def instructions_lines(codes: Sequence[str], codebook: Mapping | None = None, about: Mapping | None = None) -> list[str]:
    """The text of the instructions sheet: what to do, the answer rule, the codebook."""
    lines = [
        "How to review",
        "",
        "Each row of the 'review' sheet is one excerpt of an interview. Read 'text' (with 'context_before' and "
        "'context_after' around it) and decide, for every code, whether the excerpt draws on that discourse.",
        f"In the yellow columns ({', '.join(codes)}) choose yes or no from the dropdown (y/n and 1/0 are accepted too).",
        "Rule for blanks: a row where you answered at least one code is complete; its blank codes count as no. "
        "So for an excerpt with no code, put no under any one code. A row with no answer at all is skipped.",
        "Put your name in 'reviewer' (filling it in once is enough if you are the only reviewer). "
        "Use 'notes' for anything worth saying.",
        "'model_codes' and the p_ columns show what the model said (p = its calibrated probability). Decide from the "
        "text; do not just confirm the model.",
        "Rows marked 'random' in 'sample' are a random sample of all excerpts: they measure how accurate the model "
        "really is, so please review every one of them. 'uncertain' rows are those the model is least sure of.",
        "Do not edit, add or delete the other columns (context_before and context_after may be hidden or deleted), "
        "and keep this sheet: it says which model made the queue. When done, save the file, close it and run: "
        "discourse audit apply THIS_FILE.xlsx",
        "",
        "The codes",
        "",
    ]
    entries = {c["id"]: c for c in (codebook or {}).get("codes", []) if isinstance(c, Mapping) and "id" in c}
    for c in codes:
        e = entries.get(c, {})
        lines.append(f"{c}: {e.get('label', c)}")
        if e.get("definition"):
            lines.append(f"    {e['definition']}")
        if e.get("include"):
            lines.append("    Includes: " + "; ".join(e["include"]))
        if e.get("exclude"):
            lines.append("    Not this: " + "; ".join(e["exclude"]))
        lines.append("")
    if about:
        lines += ["About this queue", ""] + [f"{k}: {v}" for k, v in about.items()]
    return lines


def write_queue(queue: pd.DataFrame, codes: Sequence[str], path: str | os.PathLike,
                codebook: Mapping | None = None, about: Mapping | None = None) -> None:
    """Write the queue: ``.csv`` plainly, ``.xlsx`` for a person (dropdowns, instructions), atomically.

    ``codebook`` is the model manifest's codebook dict (codes with label,
    definition, include, exclude) for the instructions sheet; ``about`` adds
    provenance lines (model, predictions) to it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":  # no instructions sheet: the model's fingerprint rides on every row
        sha = str((about or {}).get(MODEL_KEY, ""))
        write_table(queue.assign(model_sha256=sha) if sha else queue, path)
        return
    if suffix != ".xlsx":
        raise DiscourseError(f"a review queue is .xlsx or .csv, not '{suffix}'", path)
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    codes = list(codes)
    wb = Workbook()
    ws = wb.active
    ws.title = REVIEW_SHEET
    cols = list(queue.columns)
    ws.append(cols)
    for row in queue.itertuples(index=False):
        ws.append([None if (isinstance(v, float) and math.isnan(v)) or v == "" else excel_safe(v) for v in row])
    text_not_formulas(ws)
    n = len(queue)
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="FFF2CC")
    wrap = Alignment(wrap_text=True, vertical="top")
    top = Alignment(vertical="top")
    for j, col in enumerate(cols, start=1):
        letter = get_column_letter(j)
        ws.cell(1, j).font = bold
        ws.cell(1, j).alignment = Alignment(wrap_text=True, vertical="bottom")
        is_reviewer = col in codes or col in ("notes", "reviewer")
        if is_reviewer:
            ws.cell(1, j).fill = fill
        ws.column_dimensions[letter].width = _WIDTHS.get(col, 12 if col in codes else 9)
        long_text = col in ("context_before", "text", "context_after", "notes")
        for i in range(2, n + 2):
            cell = ws.cell(i, j)
            cell.alignment = wrap if long_text else top
            if col.startswith("p_"):
                cell.number_format = "0.00"
            if is_reviewer:
                cell.fill = fill
    if n and codes:
        dv = DataValidation(type="list", formula1='"yes,no"', allow_blank=True, showErrorMessage=True,
                            errorTitle="yes or no", error="Choose yes or no (or leave blank).")
        ws.add_data_validation(dv)
        for c in (c for c in codes if c in cols):
            letter = get_column_letter(cols.index(c) + 1)
            dv.add(f"{letter}2:{letter}{n + 1}")
    ws.freeze_panes = "A2"
    if n:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(cols))}{n + 1}"
    info = wb.create_sheet(INSTRUCTIONS_SHEET)
    info.column_dimensions["A"].width = 120
    for k, line in enumerate(instructions_lines(codes, codebook, about), start=1):
        cell = info.cell(k, 1, line or None)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        if line in ("How to review", "The codes", "About this queue"):
            cell.font = Font(bold=True, size=13)
        elif line and not line.startswith(" ") and ":" in line and line.split(":")[0] in codes:
            cell.font = bold
    wb.properties.creator = "discourse"
    with atomic_path(path) as tmp:
        wb.save(tmp)
        normalise_xlsx(tmp)


# --- reading the review -----------------------------------------------------------


def tidy_name(name: str) -> str:
    """A reviewer's name as written down: trimmed, inner spaces collapsed ("Ruth  Smith " -> "Ruth Smith")."""
    return " ".join(str(name).split())


def reviewer_key(name: str) -> str:
    """One reviewer however the name is typed ("Ruth", "ruth ", "RUTH"): the tidy name, case-folded."""
    return tidy_name(name).casefold()


def first_spellings(names: Sequence[str]) -> dict[str, str]:
    """Reviewer key -> the first tidy spelling of that reviewer in ``names`` (blank names left out)."""
    out: dict[str, str] = {}
    for n in names:
        if tidy_name(n):
            out.setdefault(reviewer_key(n), tidy_name(n))
    return out


def _cell_str(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return str(v).upper()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _read_sheet(path: Path) -> tuple[pd.DataFrame, str | None, list[int]]:
    """Cells as stripped strings, the sheet name (None for CSV) and each row's number in the file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = read_table(path)
        df.columns = [str(c) for c in df.columns]
        df = df.map(_cell_str) if len(df) else df
        shas = sorted(set(df["model_sha256"]) - {""}) if "model_sha256" in df.columns else []
        if len(shas) > 1:
            raise DiscourseError(f"column 'model_sha256': rows from queues of {len(shas)} different models "
                                 f"({', '.join(s[:16] for s in shas)}): apply each model's queue on its own", path)
        df.attrs["about"] = {MODEL_KEY: shas[0]} if shas else {}
        return df, None, list(range(2, len(df) + 2))
    if suffix != ".xlsx":
        raise DiscourseError(f"a review file is .xlsx or .csv, not '{suffix or 'no suffix'}'", path)
    if not path.is_file():
        raise DiscourseError("file not found", path)
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - not a workbook, damaged, encrypted...
        raise DiscourseError(f"cannot read the workbook ({type(exc).__name__}: {exc})", path) from None
    try:
        name = REVIEW_SHEET if REVIEW_SHEET in wb.sheetnames else wb.sheetnames[0]
        rows = list(wb[name].iter_rows(values_only=True))
        about = {}
        if INSTRUCTIONS_SHEET in wb.sheetnames:
            lines = [_cell_str(r[0]) for r in wb[INSTRUCTIONS_SHEET].iter_rows(values_only=True) if r]
            if "About this queue" in lines:
                for line in lines[lines.index("About this queue") + 1:]:
                    key, sep, value = line.partition(": ")
                    if sep:
                        about[key] = value
    finally:
        wb.close()
    if not rows:
        raise DiscourseError(f"sheet '{name}' is empty", path)
    header = [_cell_str(v) for v in rows[0]]
    while header and header[-1] == "":
        header.pop()
    if "" in header:
        from openpyxl.utils import get_column_letter

        j = header.index("")
        raise DiscourseError(f"sheet '{name}', row 1, column {get_column_letter(j + 1)}: the column has no name", path)
    if len(set(header)) < len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DiscourseError(f"sheet '{name}', row 1: column '{dup}' appears twice", path)
    body, numbers = [], []
    for k, row in enumerate(rows[1:], start=2):
        vals = [_cell_str(v) for v in row[:len(header)]] + [""] * max(0, len(header) - len(row))
        extra = [_cell_str(v) for v in row[len(header):]]
        if any(extra):
            from openpyxl.utils import get_column_letter

            j = len(header) + next(i for i, v in enumerate(extra) if v)
            raise DiscourseError(
                f"sheet '{name}', row {k}, column {get_column_letter(j + 1)}: a value in a column with no header", path)
        if any(vals):
            body.append(vals)
            numbers.append(k)
    df = pd.DataFrame(body, columns=header, dtype=object)
    df.attrs["about"] = about
    return df, name, numbers


def check_queue_model(about: Mapping, info: Mapping, model_dir, path) -> bool:
    """Refuse a queue made from another model's predictions: its decisions would be stored under the wrong model.

    Returns whether the queue carries the model's fingerprint at all (if not, see ``verify_queue_model``).
    """
    made_by = str(about.get(MODEL_KEY, ""))
    if made_by and not str(info["model_sha256"]).startswith(made_by):
        name = about.get("model")
        raise DiscourseError(f"made from the predictions of {f'model {name!r}' if name else 'another model'} "
                             f"({made_by[:16]}), but --model is {model_dir} ({str(info['model_sha256'])[:16]}): "
                             "give --model the model that made them", path)
    return bool(made_by)


def _decimals(x: float) -> int:
    """The fewest decimals (at most 6) to which ``x`` is already rounded."""
    return next((d for d in range(6) if round(x, d) == x), 6)


def probability_mismatch(rows: pd.DataFrame, codes: Sequence[str], P: np.ndarray,
                         thresholds: Sequence[float]) -> str | None:
    """The first row whose ``p_<code>`` or ``model_codes`` are not what a model gives (``P`` for ``rows["text"]``,
    its ``thresholds``), said in a few words; None if all agree.

    Probabilities agree to the queue's rounding (the most decimals any of its values has, at most 6) plus
    ``PROBA_SLACK``; ``model_codes`` must be the codes the model assigns from its probabilities rounded to 6.
    """
    codes = list(codes)
    Q = rows[[f"p_{c}" for c in codes]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    seen = Q[~np.isnan(Q)]
    tol = 0.5 * 10.0 ** -max((_decimals(float(x)) for x in seen), default=6) + PROBA_SLACK
    P, t = np.round(np.asarray(P, float), 6), np.asarray(thresholds, float)
    hit, sure = P >= t, np.abs(P - t) > tol  # a code on its threshold may go either way on another machine
    for i, row in enumerate(rows.itertuples(index=False)):
        name = str(getattr(row, "review_id", "") or getattr(row, "excerpt_id", "") or f"row {i + 1}")
        for j, c in enumerate(codes):
            if np.isnan(Q[i, j]) or abs(Q[i, j] - P[i, j]) > tol:
                given = "blank" if np.isnan(Q[i, j]) else f"{Q[i, j]:.6g}"
                return f"{name}: p_{c} is {given} in the queue, {P[i, j]:.6f} from the model"
        said = {m.strip() for m in str(row.model_codes).replace(",", ";").split(";") if m.strip()}
        gives = {c for c, h in zip(codes, hit[i]) if h}
        if any((c in said) != (c in gives) for c, ok in zip(codes, sure[i]) if ok) or said - set(codes):
            return (f"{name}: model_codes is '{';'.join(sorted(said))}' in the queue, "
                    f"'{';'.join(c for c in codes if c in gives)}' from the model")
    return None


def verify_queue_model(rows: pd.DataFrame, about: Mapping, info: Mapping, model_dir, path,
                       backend: str | None = None, note: Callable[[str], None] | None = None) -> None:
    """Refuse to store ``rows`` of a queue under a model that did not make it.

    By the queue's fingerprint (``check_queue_model``) when it has one; when it has lost it (instructions
    sheet or model_sha256 column deleted), by predicting the rows' texts again with ``model_dir`` (encoder
    ``backend``) and comparing them with the queue's probabilities and model_codes (``probability_mismatch``);
    ``note`` is told first, as that takes a while.
    """
    if check_queue_model(about, info, info.get("model", "the model") if model_dir is None else model_dir, path):
        return
    lost = (f"no '{MODEL_KEY}' line in an '{INSTRUCTIONS_SHEET}' sheet" if Path(path).suffix.lower() == ".xlsx"
            else "no model_sha256 column")
    if model_dir is None:
        raise DiscourseError(f"the queue does not say which model made it ({lost}), and no model was given "
                             "to check it against", path)
    from .model import DiscourseClassifier

    if note:
        note(f"{Path(path).name} does not say which model made it ({lost}): checking its probabilities "
             f"against {model_dir}")
    model = DiscourseClassifier.load(model_dir, backend=backend)
    texts = rows["text"].astype(str).tolist()
    P = model.predict_proba(texts) if texts else np.zeros((0, len(model.codes)))
    why = probability_mismatch(rows, model.codes, P, model.thresholds_)
    if why:
        from .embed import DEFAULT_BACKEND

        raise DiscourseError(f"the queue does not say which model made it ({lost}), and its probabilities are "
                             f"not those of {model_dir} with the {backend or DEFAULT_BACKEND} encoder backend "
                             f"({why}): give --model (and --encoder-backend) the model it came from, or make a "
                             "new queue with `discourse audit select`", path)


def open_elsewhere(path: str | os.PathLike) -> str | None:
    """How a review file looks open in a spreadsheet (its lock file beside it), e.g.
    "looks open in Excel by Ruth (~$queue.xlsx beside it)"; None if it does not."""
    path = Path(path)
    for lock, app in ((f"~${path.name}", "Excel"), (f".~lock.{path.name}#", "LibreOffice")):
        if (path.parent / lock).is_file():
            who = _lock_owner(path.parent / lock) if app == "Excel" else ""
            return f"looks open in {app}{f' by {who}' if who else ''} ({lock} beside it)"
    return None


def _lock_owner(lock: Path) -> str:
    """The user name an Excel owner file (``~$name.xlsx``) starts with (a length byte, then the name), or ''."""
    try:
        data = lock.read_bytes()[:64]
    except OSError:
        return ""
    if not data or len(data) <= data[0]:
        return ""
    name = data[1:1 + data[0]].decode("latin-1").strip()
    return name if name.isprintable() else ""


def _where(path: Path, sheet: str | None, row: int | None, col: str | None, columns: list[str]) -> str:
    parts = []
    if sheet is not None:
        parts.append(f"sheet '{sheet}'")
    if row is not None:
        parts.append(f"row {row}")
    if col is not None:
        if sheet is not None:
            from openpyxl.utils import get_column_letter

            parts.append(f"column {get_column_letter(columns.index(col) + 1)} ({col})")
        else:
            parts.append(f"column '{col}'")
    return ", ".join(parts)


def _load_queue(path: Path, codes: list[str]) -> tuple[pd.DataFrame, str | None, list[int], list[str]]:
    df, sheet, rownum = _read_sheet(path)
    columns = list(df.columns)
    known = set(REQUIRED_REVIEW) | set(OPTIONAL_REVIEW) | set(codes) | {f"p_{c}" for c in codes}
    for col in columns:
        if col not in known:
            raise DiscourseError(
                f"{_where(path, sheet, 1, col, columns)}: unknown column '{col}': not a code of this model "
                f"({', '.join(codes)}) nor a queue column; rename or remove it (comments go in 'notes')", path)
    for col in list(REQUIRED_REVIEW) + [f"p_{c}" for c in codes] + codes:
        if col not in columns:
            raise DiscourseError(f"{_where(path, sheet, 1, None, columns)}: no column '{col}'"
                                 + (" (a code of this model)" if col in codes else "")
                                 + ": every column of the queue is needed but context_before and context_after; "
                                 "is this a review queue made by `discourse audit select` for this model?", path)
    for col in OPTIONAL_REVIEW:
        if col not in df.columns:
            df[col] = ""
    return df, sheet, rownum, columns


def _fallback_reviewer(spelling: Mapping[str, str], given: str | None) -> str | None:
    """The name for blank reviewer cells: ``given`` (spelled as in the file if the file has it), else the one
    reviewer the file names, else None."""
    if given and tidy_name(given):
        return spelling.get(reviewer_key(given), tidy_name(given))
    return next(iter(spelling.values())) if len(spelling) == 1 else None


def load_queue(path: str | os.PathLike, codes: Sequence[str]) -> pd.DataFrame:
    """Every row of a review queue as text (columns checked, answers not), for display."""
    return _load_queue(Path(path), list(codes))[0]


def read_review(path: str | os.PathLike, codes: Sequence[str], reviewer: str | None = None,
                decisions: Mapping[str, tuple[Sequence[str], str]] | None = None) -> pd.DataFrame:
    """Read and validate a reviewed queue (.xlsx sheet 'review', or .csv).

    Answers are yes/no/y/n/1/0 (any case) or blank. Rule: a row where at
    least one code is answered is a complete review and its blank codes mean
    no; a row with no answer at all is skipped (``df.attrs["skipped"]`` counts
    them). Reviewer names are matched however typed (``reviewer_key``) and each
    reviewer is given one spelling, the file's first; a blank reviewer cell
    takes ``reviewer`` if given, else the one reviewer named elsewhere in the
    file. Errors name the sheet, row and column.

    ``decisions`` (excerpt_id -> (codes, notes)), from the review page, replaces
    the file's answers: only those rows are read, with those codes and notes,
    by ``reviewer``.

    Returns one row per reviewed excerpt: the queue's excerpt columns, sample,
    model_codes, p_<code>, ``codes`` (the reviewer's, ';'-joined), notes, reviewer;
    ``attrs["about"]`` holds the XLSX queue's provenance lines (model, predictions).
    """
    path = Path(path)
    codes = list(codes)
    df, sheet, rownum, columns = _load_queue(path, codes)
    if decisions is not None:
        unknown = sorted(set(decisions) - set(df["excerpt_id"]))
        if unknown:
            raise DiscourseError(f"excerpt(s) {', '.join(unknown[:3])} are not in the queue", path)
        mask = df["excerpt_id"].isin(set(decisions)).to_numpy()
        about = df.attrs.get("about", {})
        rownum = [n for n, m in zip(rownum, mask) if m]
        df = df[mask].reset_index(drop=True)
        df.attrs["about"] = about
        for i, eid in enumerate(df["excerpt_id"]):
            chosen, notes = decisions[eid]
            for c in codes:
                df.at[i, c] = "yes" if c in set(chosen) else "no"
            df.at[i, "notes"] = str(notes or "")
            if reviewer:
                df.at[i, "reviewer"] = reviewer
    answers = np.zeros((len(df), len(codes)), dtype=np.int8)
    answered = np.zeros((len(df), len(codes)), dtype=bool)
    for j, c in enumerate(codes):
        for i, v in enumerate(df[c]):
            low = v.lower()
            if low in YES:
                answers[i, j], answered[i, j] = 1, True
            elif low in NO:
                answered[i, j] = True
            elif low:
                raise DiscourseError(f"{_where(path, sheet, rownum[i], c, columns)}: '{v}' is not an answer: "
                                     "use yes or no (or y/n, 1/0), or leave it blank", path)
    keep = answered.any(axis=1)
    skipped = int((~keep).sum())
    spelling = first_spellings(df.loc[keep, "reviewer"])
    fallback = _fallback_reviewer(spelling, reviewer)
    out_rows = []
    for i in np.where(keep)[0]:
        r = df.iloc[i]
        where = lambda col: _where(path, sheet, rownum[i], col, columns)  # noqa: E731
        if not r["excerpt_id"]:
            raise DiscourseError(f"{where('excerpt_id')}: no excerpt_id for a reviewed row", path)
        if r["sample"] not in SAMPLES:
            raise DiscourseError(f"{where('sample')}: sample is '{r['sample']}', expected random or uncertain", path)
        if not r["text"]:
            raise DiscourseError(f"{where('text')}: the excerpt text is empty", path)
        pos = {}
        for col in ("start", "end"):
            try:
                pos[col] = int(float(r[col]))
            except (ValueError, OverflowError):
                raise DiscourseError(f"{where(col)}: '{r[col]}' is not a character offset", path) from None
        probs = {}
        for c in codes:
            col = f"p_{c}"
            if col in columns and r[col] != "":
                try:
                    probs[col] = float(r[col])
                except ValueError:
                    raise DiscourseError(f"{where(col)}: '{r[col]}' is not a probability", path) from None
                if not 0 <= probs[col] <= 1:
                    raise DiscourseError(f"{where(col)}: {r[col]} is not a probability between 0 and 1", path)
            else:
                probs[col] = np.nan
        model_codes = sorted({m.strip() for m in r["model_codes"].replace(",", ";").split(";") if m.strip()})
        bad = [m for m in model_codes if m not in codes]
        if bad:
            raise DiscourseError(f"{where('model_codes')}: code(s) {', '.join(bad)} are not codes of this model", path)
        name = spelling[reviewer_key(r["reviewer"])] if tidy_name(r["reviewer"]) else fallback
        if not name:
            named = ", ".join(spelling.values())
            seen = f", and the file names {len(spelling)} reviewers ({named})" if spelling else ""
            raise DiscourseError(f"{where('reviewer')}: no reviewer name{seen}: fill in the reviewer column "
                                 "(or give --reviewer NAME)", path)
        out_rows.append({
            "review_id": r["review_id"], "sample": r["sample"], "excerpt_id": r["excerpt_id"],
            "doc_id": r["doc_id"], "start": pos["start"], "end": pos["end"], "speaker": r["speaker"],
            "role": r["role"], "trust": r["trust"], "text": r["text"], "model_codes": ";".join(model_codes),
            **probs, "codes": ";".join(c for c, a in zip(codes, answers[i]) if a), "notes": r["notes"],
            "reviewer": name, "_row": rownum[i],
        })
    cols = (["review_id", "sample", "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust", "text",
             "model_codes"] + [f"p_{c}" for c in codes] + ["codes", "notes", "reviewer"])
    out = pd.DataFrame(out_rows, columns=cols + ["_row"])
    dup = out.duplicated(["excerpt_id", "reviewer"], keep=False)
    if dup.any():
        first = out[dup].iloc[0]
        rows = out.loc[dup & (out.excerpt_id == first.excerpt_id), "_row"].tolist()
        raise DiscourseError(f"{_where(path, sheet, None, None, columns) + ': ' if sheet else ''}rows "
                             f"{', '.join(map(str, rows))}: excerpt {first.excerpt_id} is reviewed twice by "
                             f"{first.reviewer}; keep one row", path)
    out = out.drop(columns="_row")
    out.attrs["skipped"] = skipped
    out.attrs["file"] = path.name
    out.attrs["about"] = df.attrs.get("about", {})
    return out


