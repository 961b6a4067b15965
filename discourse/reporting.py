"""Markdown renderings of measurement tables, for people and for docs/."""

from __future__ import annotations

import pandas as pd

from .evaluate import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CEILING_MARGIN, MAX_UNDEFINED_SHARE, not_assessable,
                       undefined_codes)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f", na: str = "") -> str:
    """A plain GitHub-style Markdown table (no extra dependency); a missing number shows as ``na``."""
    cols = list(df.columns)

    def cell(v):
        if isinstance(v, float):
            return na if pd.isna(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def evaluation_markdown(table: pd.DataFrame, ece: float, n: int, model_name: str, test_name: str) -> str:
    """The evaluation report written by `discourse evaluate`."""
    macro = table.set_index("code").loc["macro"]
    micro = table.set_index("code").loc["micro"]
    shown, note = table, _undefined_note(table)
    if {"f1_low", "kappa_low"} <= set(table.columns):
        def interval(lo, hi):
            return [f"{a:.3f}-{b:.3f}" if pd.notna(a) else "" if c == "micro" else "n/a"
                    for c, a, b in zip(table.code, table[lo], table[hi])]
        shown = table.drop(columns=["f1_low", "f1_high", "kappa_low", "kappa_high"])
        shown.insert(shown.columns.get_loc("f1") + 1, "f1 95% CI", interval("f1_low", "f1_high"))
        shown.insert(shown.columns.get_loc("kappa") + 1, "kappa 95% CI", interval("kappa_low", "kappa_high"))
        note += ("The intervals are 95% percentile bootstrap intervals over excerpts "
                 f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}). "
                 "Excerpts from one interview are not independent, so the true uncertainty is somewhat wider.\n\n")
        note += _no_interval_note(table)
    return (
        f"# Evaluation of `{model_name}` on `{test_name}`\n\n"
        f"{n} hand-coded excerpts. Macro-F1 **{_num(macro.f1)}**, micro-F1 {_num(micro.f1)}, "
        f"mean Cohen's kappa {_num(macro.kappa)}, mean Krippendorff's alpha {_num(macro.alpha)}, "
        f"expected calibration error **{ece:.3f}** (10 equal-width bins, all code probabilities pooled).\n\n"
        + markdown_table(shown, na="n/a")
        + "\n" + note + "The reliability diagram is in `reliability.png`.\n"
    )


def _num(v: float) -> str:
    return "n/a" if pd.isna(v) else f"{v:.3f}"


def _undefined_note(table: pd.DataFrame) -> str:
    """A sentence naming the codes with an undefined metric, left out of the macro row ('' if none)."""
    left = undefined_codes(table)
    if not left:
        return ""
    return ("n/a: not defined, as neither the test set nor the model coded any excerpt with the code (kappa and alpha "
            "are also not defined when both coded every excerpt with it). The macro row averages the codes where each "
            f"is defined, leaving out {', '.join(left)}.\n\n")


def _no_interval_note(table: pd.DataFrame) -> str:
    """A sentence naming the codes given no interval although the metric is defined ('' if none)."""
    rows = table[~table.code.isin(["macro", "micro"])]
    bare = rows.code[(rows.f1.notna() & rows.f1_low.isna()) | (rows.kappa.notna() & rows.kappa_low.isna())].tolist()
    if not bare:
        return ""
    return (f"No interval (n/a) for {', '.join(bare)}: in more than {MAX_UNDEFINED_SHARE:.0%} of the resamples "
            "no excerpt was coded with the code, too few coded excerpts to bound it.\n\n")


def ceiling_markdown(table: pd.DataFrame, second_name: str, n_test: int, margin: float = CEILING_MARGIN) -> str:
    """The section of the evaluation report that sets the model beside a second human coder."""
    n = int(table.excerpts.iloc[0])
    codes = table[table.code != "mean"]
    met = int(codes.met.sum())
    left = not_assessable(table)

    def interval(lo, hi):
        return [f"{a:.3f} to {b:.3f}" if pd.notna(a) else "n/a" for a, b in zip(table[lo], table[hi])]

    shown = pd.DataFrame({
        "code": table.code, "first coder": table.first_coded, "second coder": table.second_coded,
        "human kappa": table.human_kappa, "human 95% CI": interval("human_kappa_low", "human_kappa_high"),
        "model kappa": table.model_kappa, "model - human": table.gap,
        "model - human 95% CI": interval("gap_low", "gap_high"),
        f"target (human - {margin:g})": table.target,
        "met": ["n/a" if pd.isna(m) else "yes" if m else "no" for m in table.met],
    })
    note = "" if not left else (
        f" Not assessable (n/a), and left out of the mean row's kappas: {', '.join(left)}, where a kappa is not "
        "defined (neither coder used the code, or the first coder and the model never did); the mean row's coder "
        "columns are totals over all codes.")
    return (
        "\n## Against a second coder\n\n"
        f"A second coder coded {n} of the {n_test} excerpts (`{second_name}`). "
        "Human kappa is the two coders' agreement: if the second coder did not see the first coder's codes, it is "
        "the ceiling a model can be held to. Model kappa is the model's agreement with the first coder on the same excerpts. The interval of the difference is a paired bootstrap "
        f"(both kappas on the same {BOOTSTRAP_RESAMPLES:,} resamples of excerpts, seed {BOOTSTRAP_SEED}). "
        f"A code meets the ceiling when the model's kappa is at least the human kappa less {margin:g}: "
        f"**{met} of {len(codes) - len(left)}** codes do.{note}\n\n"
        + markdown_table(shown, na="n/a")
    )
