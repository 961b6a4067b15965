"""The audit loop: choose excerpts for a researcher to review; fold the answers back in.

1. ``select_for_review`` builds a review queue from a predictions table. A fixed
   share of the budget (default 10%) is a simple random sample of *all*
   excerpts, drawn first and marked ``sample = "random"``: only these rows
   estimate the model's real accuracy without bias. The rest (``"uncertain"``)
   are the excerpts whose code decision is most likely wrong, spread out by a
   per-document cap and a round-robin over (role, most doubtful code).
2. ``write_queue`` writes it for a person (XLSX with yes/no dropdowns and an
   instructions sheet) or as plain CSV.
3. ``read_review`` validates the edited file; ``apply_review`` appends the
   decisions to a reviewed-codes store (Parquet) with provenance, and
   ``review_summary`` measures the model against the reviewer.
4. ``reviewed_as_coded`` turns the store into training rows
   (``discourse train --include-reviewed STORE``). Training files are never edited.

Uncertainty is the calibrated probability that an excerpt's code decision is
wrong somewhere: ``1 - prod_j r_j`` where ``r_j`` is ``p_j`` for an assigned
code and ``1 - p_j`` for one not assigned (codes treated as independent).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import zipfile
from datetime import date
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DiscourseError
from .evaluate import cohen_kappa
from .tables import atomic_path, read_table, write_table

REVIEW_SHEET = "review"
INSTRUCTIONS_SHEET = "instructions"
CONTEXT_CHARS = 200
YES = {"yes", "y", "1", "1.0"}
NO = {"no", "n", "0", "0.0"}
EXCERPT_COLUMNS = ["excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust"]
STORE_COLUMNS = [
    "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust", "text", "sample", "reviewer",
    "review_date", "codes", "model_codes",  # p_<code> columns follow model_codes
    "notes", "model", "model_sha256", "review_file", "review_id",
]
REQUIRED_REVIEW = ("excerpt_id", "doc_id", "start", "end", "text", "sample", "model_codes")
OPTIONAL_REVIEW = ("review_id", "speaker", "role", "trust", "context_before", "context_after", "notes", "reviewer")
SAMPLES = ("random", "uncertain")


def queue_columns(codes: Sequence[str]) -> list[str]:
    """The columns of a review queue, in order."""
    return (["review_id", "sample", "excerpt_id", "doc_id", "start", "end", "speaker", "role", "trust",
             "context_before", "text", "context_after", "model_codes"]
            + [f"p_{c}" for c in codes] + list(codes) + ["notes", "reviewer"])


# --- uncertainty ------------------------------------------------------------------


def _threshold_array(thresholds, codes: Sequence[str]) -> np.ndarray:
    if isinstance(thresholds, Mapping):
        missing = [c for c in codes if c not in thresholds]
        if missing:
            raise DiscourseError(f"no decision threshold for code(s) {', '.join(missing)}")
        return np.array([float(thresholds[c]) for c in codes])
    t = np.asarray(thresholds, float)
    if t.shape != (len(codes),):
        raise DiscourseError(f"{len(t)} thresholds for {len(codes)} codes")
    return t


def decision_right(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per excerpt and code, the calibrated probability that the yes/no decision taken is right."""
    return np.where(P >= thresholds, P, 1 - P)


def wrong_probability(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probability that an excerpt's code decision is wrong for at least one code."""
    return 1 - np.prod(decision_right(P, thresholds), axis=1)


# --- context ----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?\u2026][\"')\]\u2019\u201d]*\s+")
_SENTENCE_STOP = re.compile(r"[.!?\u2026][\"')\]\u2019\u201d]*(?=\s|$)")


def _tail(text: str, lo: int, hi: int, limit: int) -> str:
    """Up to ``limit`` characters of ``text[lo:hi]`` ending at ``hi``, starting at a sentence start."""
    if hi - lo <= limit:
        return text[lo:hi].strip()
    window = text[hi - limit:hi]
    m = _SENTENCE_END.search(window)
    if m and window[m.end():].strip():
        return window[m.end():].strip()
    cut = window.find(" ")
    return "\u2026" + window[cut + 1 if cut >= 0 else 0:].strip()


def _head(text: str, lo: int, hi: int, limit: int) -> str:
    """Up to ``limit`` characters of ``text[lo:hi]`` starting at ``lo``, ending at a sentence end."""
    if hi - lo <= limit:
        return text[lo:hi].strip()
    window = text[lo:lo + limit]
    ends = [m.end() for m in _SENTENCE_STOP.finditer(window)]
    if ends and window[:ends[-1]].strip():
        return window[:ends[-1]].strip()
    cut = window.rfind(" ")
    return window[:cut if cut > 0 else len(window)].strip() + "\u2026"


def excerpt_context(text: str, start: int, end: int, doc_turns: pd.DataFrame | None,
                    speaker: str = "", limit: int = CONTEXT_CHARS) -> tuple[str, str]:
    """Text just before and just after an excerpt (about ``limit`` characters each way).

    Inside the excerpt's own turn the context stops at sentence boundaries; if
    the excerpt opens (or closes) its turn, the neighbouring turn is shown with
    its speaker's label, so a reviewer sees the question being answered.
    """
    if not text:
        return "", ""
    start, end = max(0, min(int(start), len(text))), max(0, min(int(end), len(text)))
    if doc_turns is None or doc_turns.empty:
        return _tail(text, 0, start, limit), _head(text, end, len(text), limit)
    spans = doc_turns.sort_values("start", kind="stable")
    starts, ends = spans["start"].to_numpy(int), spans["end"].to_numpy(int)
    inside = np.where((starts <= start) & (ends >= end))[0]
    if not len(inside):
        return _tail(text, 0, start, limit), _head(text, end, len(text), limit)
    k = int(inside[-1])
    speakers = spans["speaker"].astype(str).tolist()
    before = _tail(text, starts[k], start, limit)
    after = _head(text, end, ends[k], limit)
    if len(before) < limit // 2 and k > 0:
        prev = f"{speakers[k - 1]}: {_tail(text, starts[k - 1], ends[k - 1], max(limit - len(before), limit // 2))}"
        before = prev + (f"\n{speaker or speakers[k]}: {before}" if before else "")
    if len(after) < limit // 2 and k + 1 < len(spans):
        nxt = f"{speakers[k + 1]}: {_head(text, starts[k + 1], ends[k + 1], max(limit - len(after), limit // 2))}"
        after = (f"{after}\n" if after else "") + nxt
    return before, after


# --- selection --------------------------------------------------------------------


def default_per_doc_cap(n_uncertain: int, doc_sizes: Mapping[str, int]) -> dict[str, int]:
    """Per document, twice its share of the uncertain picks in proportion to its size, and at least 2.

    With documents of equal size this is ``max(2, ceil(2 * n_uncertain / n_docs))``.
    """
    total = max(sum(doc_sizes.values()), 1)
    return {d: max(2, math.ceil(2 * n_uncertain * size / total)) for d, size in doc_sizes.items()}


def n_random_for(budget: int, random_share: float) -> int:
    """How many of ``budget`` rows are the random sample: share x budget rounded (half up), at least 1 when budget >= 10."""
    n = int(math.floor(budget * random_share + 0.5))
    if random_share > 0 and budget >= 10:
        n = max(n, 1)
    return min(n, budget)


def _round_robin(cand: pd.DataFrame, n: int, cap: Mapping[str, int], used: dict[str, int]) -> list[int]:
    """Take ``n`` rows from ``cand`` (sorted most doubtful first), one per stratum in turn, within ``cap`` per doc."""
    queues = {key: list(grp.index) for key, grp in cand.groupby("stratum", sort=False)}
    order = list(queues)  # strata in order of their most doubtful excerpt (cand is sorted)
    taken: list[int] = []
    while len(taken) < n and order:
        for key in list(order):
            q = queues[key]
            while q and used.get(cand.at[q[0], "doc_id"], 0) >= cap[cand.at[q[0], "doc_id"]]:
                q.pop(0)
            if not q:
                order.remove(key)
                continue
            i = q.pop(0)
            used[cand.at[i, "doc_id"]] = used.get(cand.at[i, "doc_id"], 0) + 1
            taken.append(i)
            if len(taken) >= n:
                break
    return taken


def select_for_review(pred: pd.DataFrame, turns: pd.DataFrame | None, texts: Mapping[str, str],
                      codes: Sequence[str], thresholds, budget: int, random_share: float = 0.10,
                      per_doc_cap: int | None = None, seed: int = 0, pool_factor: float = 1.5,
                      exclude: Iterable[str] = ()) -> pd.DataFrame:
    """A review queue of ``budget`` excerpts (see ``queue_columns``), deterministic for a seed.

    - ``random``: ``n_random_for(budget, random_share)`` excerpts drawn first, a
      simple random sample of all excerpts with probabilities.
    - ``uncertain``: the rest, from the ``pool_factor x`` that many excerpts most
      likely to be wrong (``wrong_probability``), taken round-robin over strata
      (role, the code whose decision is most doubtful), most doubtful first,
      at most ``per_doc_cap`` per document (default ``default_per_doc_cap``:
      twice the document's share by size, at least 2). If the pool runs dry
      under the cap, the next most doubtful excerpts fill the budget, still
      within the cap (so an explicit cap may leave the queue short).
      ``exclude`` (e.g. excerpts already reviewed) only limits this part.

    The queue is sorted by document and position; reviewer columns are empty.
    """
    codes = list(codes)
    pcols = [f"p_{c}" for c in codes]
    missing = [c for c in ("excerpt_id", "doc_id", "text", *pcols) if c not in pred.columns]
    if missing:
        raise DiscourseError(f"the predictions have no column(s) {', '.join(missing)}")
    if int(budget) < 1:
        raise DiscourseError(f"the review budget must be at least 1 excerpt (got {budget})")
    if not 0 <= random_share <= 1:
        raise DiscourseError(f"the random share must be between 0 and 1 (got {random_share})")
    if per_doc_cap is not None and per_doc_cap < 1:
        raise DiscourseError(f"the per-document cap must be at least 1 (got {per_doc_cap})")
    if pred["excerpt_id"].duplicated().any():
        dup = pred.loc[pred["excerpt_id"].duplicated(), "excerpt_id"].iloc[0]
        raise DiscourseError(f"excerpt_id {dup} appears more than once in the predictions")
    t = _threshold_array(thresholds, codes)
    df = pred.copy()
    for col in ("speaker", "role", "trust"):
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    for col in ("start", "end"):
        if col not in df.columns:
            df[col] = 0
    df["excerpt_id"] = df["excerpt_id"].astype(str)
    df["doc_id"] = df["doc_id"].astype(str)
    P = df[pcols].to_numpy(float)
    ok = ~np.isnan(P).any(axis=1) & (df["text"].fillna("").astype(str).str.strip() != "").to_numpy()
    df = df[ok].sort_values(["doc_id", "start", "end", "excerpt_id"], kind="stable").reset_index(drop=True)
    if df.empty:
        raise DiscourseError("no excerpt with probabilities to review")
    P = df[pcols].to_numpy(float)
    right = decision_right(P, t)
    df["_wrong"] = 1 - np.prod(right, axis=1)
    df["stratum"] = df["role"] + "|" + [codes[j] for j in right.argmin(axis=1)]
    budget = min(int(budget), len(df))

    rng = np.random.default_rng(seed)
    n_rand = n_random_for(budget, random_share)
    rand_idx = sorted(rng.choice(len(df), size=n_rand, replace=False).tolist()) if n_rand else []
    n_unc = budget - n_rand
    sizes = df["doc_id"].value_counts().to_dict()
    cap = ({d: int(per_doc_cap) for d in sizes} if per_doc_cap is not None
           else default_per_doc_cap(n_unc, sizes))
    skip = set(map(str, exclude))
    cand = df.drop(index=rand_idx)
    cand = cand[~cand["excerpt_id"].isin(skip)]
    cand = cand.sort_values(["_wrong", "excerpt_id"], ascending=[False, True], kind="stable")
    pool = cand.head(max(n_unc, int(math.ceil(pool_factor * n_unc))))
    used: dict[str, int] = {}
    unc_idx = _round_robin(pool, n_unc, cap, used)
    if len(unc_idx) < n_unc:  # pool exhausted under the cap: next most doubtful, still within the cap
        rest = cand.drop(index=unc_idx)
        rest = rest.assign(stratum="")
        unc_idx += _round_robin(rest, n_unc - len(unc_idx), cap, used)

    chosen = df.loc[rand_idx + unc_idx].copy()
    chosen["sample"] = ["random"] * len(rand_idx) + ["uncertain"] * len(unc_idx)
    chosen = chosen.sort_values(["doc_id", "start", "end", "excerpt_id"], kind="stable").reset_index(drop=True)
    before, after = [], []
    groups = {d: g for d, g in turns.groupby("doc_id", sort=False)} if turns is not None and len(turns) else {}
    for r in chosen.itertuples():
        b, a = excerpt_context(texts.get(r.doc_id, ""), r.start, r.end, groups.get(r.doc_id), r.speaker)
        before.append(b)
        after.append(a)
    chosen["context_before"], chosen["context_after"] = before, after
    width = max(3, len(str(len(chosen))))
    chosen["review_id"] = [f"R{i:0{width}d}" for i in range(1, len(chosen) + 1)]
    chosen["model_codes"] = (chosen["codes"].fillna("").astype(str) if "codes" in chosen.columns
                             else [";".join(c for c, h in zip(codes, row) if h) for row in chosen[pcols].to_numpy() >= t])
    for c in codes:
        chosen[c] = ""
    chosen["notes"], chosen["reviewer"] = "", ""
    chosen["start"], chosen["end"] = chosen["start"].astype(int), chosen["end"].astype(int)
    return chosen[queue_columns(codes)]


# --- writing the queue ------------------------------------------------------------

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
        "Do not edit the other columns or add columns. When done, save the file and run: "
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


def _normalise_xlsx(path: Path) -> None:
    """Fixed zip timestamps and document dates, so the same queue gives the same bytes."""
    with zipfile.ZipFile(path) as zin:
        items = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in items:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>2000-01-01T00:00:00Z", data)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
    path.write_bytes(buf.getvalue())


def write_queue(queue: pd.DataFrame, codes: Sequence[str], path: str | os.PathLike,
                codebook: Mapping | None = None, about: Mapping | None = None) -> None:
    """Write the queue: ``.csv`` plainly, ``.xlsx`` for a person (dropdowns, instructions), atomically.

    ``codebook`` is the model manifest's codebook dict (codes with label,
    definition, include, exclude) for the instructions sheet; ``about`` adds
    provenance lines (model, predictions) to it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        write_table(queue, path)
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
        ws.append([None if (isinstance(v, float) and math.isnan(v)) or v == "" else v for v in row])
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
        _normalise_xlsx(tmp)


# --- reading the review -----------------------------------------------------------


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
        return df.map(_cell_str) if len(df) else df, None, list(range(2, len(df) + 2))
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
    for col in list(REQUIRED_REVIEW) + codes:
        if col not in columns:
            raise DiscourseError(f"{_where(path, sheet, 1, None, columns)}: no column '{col}'"
                                 + (" (a code of this model)" if col in codes else "")
                                 + ": is this a review queue made by `discourse audit select` for this model?", path)
    for col in OPTIONAL_REVIEW:
        if col not in df.columns:
            df[col] = ""
    return df, sheet, rownum, columns


def load_queue(path: str | os.PathLike, codes: Sequence[str]) -> pd.DataFrame:
    """Every row of a review queue as text (columns checked, answers not), for display."""
    return _load_queue(Path(path), list(codes))[0]


def read_review(path: str | os.PathLike, codes: Sequence[str], reviewer: str | None = None,
                decisions: Mapping[str, tuple[Sequence[str], str]] | None = None) -> pd.DataFrame:
    """Read and validate a reviewed queue (.xlsx sheet 'review', or .csv).

    Answers are yes/no/y/n/1/0 (any case) or blank. Rule: a row where at
    least one code is answered is a complete review and its blank codes mean
    no; a row with no answer at all is skipped (``df.attrs["skipped"]`` counts
    them). A blank reviewer cell takes ``reviewer`` if given, else the one
    name used elsewhere in the file. Errors name the sheet, row and column.

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
    names = sorted({n for n in df.loc[keep, "reviewer"] if n})
    fallback = reviewer or (names[0] if len(names) == 1 else None)
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
        name = r["reviewer"] or fallback
        if not name:
            raise DiscourseError(f"{where('reviewer')}: no reviewer name: fill in the reviewer column "
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


# --- the store --------------------------------------------------------------------


def model_info(model_dir: str | os.PathLike) -> dict:
    """Provenance of a model folder: its name and the sha256 of its manifest.json."""
    folder = Path(model_dir)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise DiscourseError("not a model folder (no manifest.json)", folder)
    return {"model": folder.resolve().name, "model_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}


def store_columns(codes: Sequence[str]) -> list[str]:
    i = STORE_COLUMNS.index("model_codes") + 1
    return STORE_COLUMNS[:i] + [f"p_{c}" for c in codes] + STORE_COLUMNS[i:]


def read_store(store_path: str | os.PathLike) -> pd.DataFrame:
    """The reviewed-codes store (Parquet), checked for its key columns."""
    path = Path(store_path)
    if path.suffix.lower() != ".parquet":
        raise DiscourseError("the reviewed-codes store is a .parquet file", path)
    df = read_table(path, required=("excerpt_id", "text", "codes", "reviewer", "review_date", "sample"))
    for col in ("codes", "model_codes"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: ";".join(v) if isinstance(v, (list, tuple, np.ndarray)) else v)
            df[col] = df[col].fillna("").astype(str)
    return df


def apply_review(reviewed: pd.DataFrame, store_path: str | os.PathLike, model_info: Mapping,
                 today: str | None = None, codes: Sequence[str] | None = None) -> dict:
    """Append reviewed decisions to the store (created if absent); returns ``review_summary`` plus counts.

    Key: excerpt_id + reviewer. A decision already in the store with the same
    codes and notes is kept as it is (its date too); a changed one is replaced
    (the later decision wins). Rows carry the reviewer, today's date, the model
    folder and its manifest sha256, the model's codes and probabilities, the
    excerpt's position and text, the sample type and the review file's name.
    """
    path = Path(store_path)
    codes = list(codes) if codes is not None else [c[2:] for c in reviewed.columns if c.startswith("p_")]
    new = reviewed.copy()
    new["review_date"] = today or date.today().isoformat()
    new["model"] = str(model_info.get("model", ""))
    new["model_sha256"] = str(model_info.get("model_sha256", ""))
    new["review_file"] = reviewed.attrs.get("file", "")
    cols = store_columns(codes)
    for col in cols:
        if col not in new.columns:
            new[col] = np.nan if col.startswith("p_") else ""
    new = new[cols]
    old = read_store(path) if path.exists() else pd.DataFrame(columns=cols)
    for col in cols:
        if col not in old.columns:
            old[col] = np.nan if col.startswith("p_") else ""
    old_cols = cols + [c for c in old.columns if c not in cols]
    old = old[old_cols]
    key = lambda d: d["excerpt_id"].astype(str) + "\x00" + d["reviewer"].astype(str)  # noqa: E731
    old_by_key = dict(zip(key(old), range(len(old))))
    counts = {"new": 0, "updated": 0, "unchanged": 0}
    keep_new = []
    for k, row in zip(key(new), new.itertuples(index=False)):
        if k not in old_by_key:
            counts["new"] += 1
            keep_new.append(True)
            continue
        prev = old.iloc[old_by_key[k]]
        same = str(prev["codes"]) == row.codes and str(prev["notes"] or "") == str(row.notes or "") \
            and str(prev["sample"]) == row.sample
        counts["unchanged" if same else "updated"] += 1
        keep_new.append(not same)
    new = new[np.array(keep_new, dtype=bool)]
    drop = key(old).isin(set(key(new)))
    store = pd.concat([old[~drop], new], ignore_index=True) if len(old) else new.copy()
    store["start"] = pd.to_numeric(store["start"], errors="coerce").astype("Int64")
    store["end"] = pd.to_numeric(store["end"], errors="coerce").astype("Int64")
    for col in store.columns:
        if col.startswith("p_"):
            store[col] = store[col].astype(float)
        elif col not in ("start", "end"):
            store[col] = store[col].fillna("").astype(str)
    store = store.sort_values(["doc_id", "start", "end", "excerpt_id", "reviewer"], kind="stable").reset_index(drop=True)
    write_table(store, path)
    summary = review_summary(store[store["model_sha256"] == str(model_info.get("model_sha256", ""))], codes)
    summary.update({"applied": len(reviewed), "skipped_blank": int(reviewed.attrs.get("skipped", 0)),
                    "store": str(path), "store_rows": len(store), **counts})
    return summary


# --- statistics -------------------------------------------------------------------


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def bootstrap_kappa(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of Cohen's kappa, resampling excerpts.

    Resamples in which kappa is not defined (both codings all yes or all no)
    are left out; if every resample is such, the interval is (nan, nan).
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if len(a) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    ks = []
    for i in idx:
        both = np.concatenate([a[i], b[i]])
        if both.min() != both.max():
            ks.append(cohen_kappa(a[i], b[i]))
    if not ks:
        return (float("nan"), float("nan"))
    return float(np.quantile(ks, 0.025)), float(np.quantile(ks, 0.975))


def _code_matrix(values: Iterable[str], codes: Sequence[str]) -> np.ndarray:
    sets = [set(str(v).split(";")) - {""} for v in values]
    return np.array([[c in s for c in codes] for s in sets], dtype=bool).reshape(len(sets), len(codes))


def review_summary(store: pd.DataFrame, codes: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """The model against its reviewers.

    From the random-sample rows only (an unbiased estimate): exact-match
    accuracy (model code set == reviewer's) with a Wilson 95% interval, and per
    code Cohen's kappa with a bootstrap 95% interval. From all rows: how many
    model codes the reviewers added and removed.
    """
    codes = list(codes)
    M = _code_matrix(store["model_codes"], codes)
    R = _code_matrix(store["codes"], codes)
    rand = (store["sample"] == "random").to_numpy()
    Mr, Rr = M[rand], R[rand]
    n = int(rand.sum())
    k = int((Mr == Rr).all(axis=1).sum())
    per_code = {}
    for j, c in enumerate(codes):
        lo, hi = bootstrap_kappa(Mr[:, j], Rr[:, j], n_boot, seed + j) if n else (float("nan"), float("nan"))
        both = np.concatenate([Mr[:, j], Rr[:, j]])
        per_code[c] = {"kappa": cohen_kappa(Mr[:, j], Rr[:, j]) if n else float("nan"), "ci_low": lo, "ci_high": hi,
                       "model_yes": int(Mr[:, j].sum()), "reviewer_yes": int(Rr[:, j].sum()),
                       "informative": bool(n and both.min() != both.max())}
    added, removed = R & ~M, M & ~R
    return {
        "random": {"n": n, "exact_match": k, "accuracy": k / n if n else float("nan"),
                   "ci": wilson_interval(k, n), "kappa": per_code},
        "corrections": {"rows": len(store), "rows_changed": int((added | removed).any(axis=1).sum()),
                        "added": int(added.sum()), "removed": int(removed.sum()),
                        "by_code": {c: {"added": int(added[:, j].sum()), "removed": int(removed[:, j].sum())}
                                    for j, c in enumerate(codes)}},
    }


def format_summary(summary: dict) -> str:
    """The summary as a few lines for the terminal."""
    r, c = summary["random"], summary["corrections"]
    lines = []
    if r["n"]:
        lo, hi = r["ci"]
        lines.append(f"random sample: {r['n']} excerpts; the model's codes match the reviewer's exactly in "
                     f"{r['exact_match']} ({r['accuracy']:.0%}, 95% CI {lo:.0%}-{hi:.0%})")
        lines.append("per-code agreement on the random sample (Cohen's kappa, 95% bootstrap CI; model/reviewer yes):")
        for code, k in r["kappa"].items():
            if k["informative"]:
                lines.append(f"  {code:<14} {k['kappa']:6.2f}  ({k['ci_low']:.2f} to {k['ci_high']:.2f})  "
                             f"{k['model_yes']}/{k['reviewer_yes']}")
            else:
                lines.append(f"  {code:<14}    n/a  (all {'yes' if k['model_yes'] else 'no'} from both: "
                             "kappa is not defined)")
        if r["n"] < 30:
            lines.append(f"  (only {r['n']} random rows: the intervals are wide; review more to narrow them)")
    else:
        lines.append("no random-sample rows reviewed yet: accuracy cannot be estimated without bias")
    lines.append(f"corrections in {c['rows']} reviewed excerpts: {c['added']} code(s) added, {c['removed']} removed "
                 f"({c['rows_changed']} excerpts changed)")
    return "\n".join(lines)


# --- back to training data ----------------------------------------------------------


def reviewed_as_coded(store_path: str | os.PathLike, codes: Sequence[str]) -> pd.DataFrame:
    """The store as coded excerpts for training: text, codes (list), coder, source, batch, id.

    One row per excerpt: when several reviewers coded it, the latest decision
    (by review date, then reviewer name) is used. Codes must be in ``codes``.
    """
    path = Path(store_path)
    df = read_store(path)
    df = df.sort_values(["excerpt_id", "review_date", "reviewer"], kind="stable")
    df = df.drop_duplicates("excerpt_id", keep="last")
    known = set(codes)
    sets = []
    for eid, value in zip(df["excerpt_id"], df["codes"]):
        cs = sorted({c.strip() for c in str(value).split(";") if c.strip()})
        bad = [c for c in cs if c not in known]
        if bad:
            raise DiscourseError(f"excerpt {eid}: code(s) {', '.join(bad)} are not in the codebook "
                                 f"(known: {', '.join(codes)})", path)
        sets.append(cs)
    out = pd.DataFrame({"text": df["text"].astype(str).tolist(), "codes": sets,
                        "coder": df["reviewer"].astype(str).tolist(), "source": "reviewed", "batch": "reviewed",
                        "id": df["excerpt_id"].astype(str).tolist()})
    out = out[out["text"].str.strip() != ""]
    return out.sort_values("id", kind="stable").reset_index(drop=True)


# --- predictions folders --------------------------------------------------------------


def read_classify_folder(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str], dict]:
    """predictions, turns (or None), canonical texts by doc_id and run.json (or {}) of a classify folder.

    ``path`` is the folder or its predictions.parquet (any predictions table
    works; turns and texts are then looked for beside it).
    """
    import json

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    pred_path = p / "predictions.parquet" if p.is_dir() else p
    pred = read_table(pred_path, required=("excerpt_id", "doc_id", "text"))
    if not any(c.startswith("p_") for c in pred.columns):
        raise DiscourseError("no p_<code> probability columns: is this a predictions table?", pred_path)
    for c in pred.columns:
        if c.startswith("p_"):
            try:
                pred[c] = pd.to_numeric(pred[c].replace("", np.nan)).astype(float)
            except (ValueError, TypeError):
                raise DiscourseError(f"column {c} is not numeric", pred_path) from None
    for c in ("start", "end"):
        if c in pred.columns:
            pred[c] = pd.to_numeric(pred[c], errors="coerce").fillna(0).astype(int)
    turns = read_table(folder / "turns.parquet") if (folder / "turns.parquet").is_file() else None
    texts = {}
    if (folder / "texts").is_dir():
        for f in sorted((folder / "texts").glob("*.txt")):
            with open(f, encoding="utf-8", newline="") as fh:
                texts[f.stem] = fh.read()
    run = {}
    if (folder / "run.json").is_file():
        try:
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DiscourseError("run.json is not valid JSON", folder / "run.json") from None
    return pred, turns, texts, run
