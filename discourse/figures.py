"""Figures for the report, drawn with matplotlib and returned as inline SVG (deterministic)."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

PALETTE = ["#1f5f8b", "#c8553d", "#588157", "#8e6c8a", "#d9a441", "#4d908e", "#6c757d", "#b56576"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "discourse", "font.size": 9, "font.family": "DejaVu Sans",
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def to_svg(fig) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)


def _drawable(prof: pd.DataFrame, codes: list[str]) -> bool:
    """Whether a profile has a prevalence to draw: some group, some code, a number (not all missing)."""
    return bool(codes) and len(prof) > 0 and bool(prof["prevalence"].notna().any())


def heatmap(prof: pd.DataFrame, codes: list[str], labels: dict[str, str]) -> str:
    """Groups x codes, cell = prevalence (share of excerpts), annotated; '' when there is no prevalence to draw."""
    if not _drawable(prof, codes):
        return ""
    plt = _plt()
    groups = sorted(prof["group"].unique())
    M = prof.pivot(index="group", columns="code", values="prevalence").reindex(index=groups, columns=codes)
    fig, ax = plt.subplots(figsize=(1.1 * len(codes) + 2.2, 0.42 * len(groups) + 1.2))
    im = ax.imshow(M.to_numpy(float), cmap="Blues", vmin=0, vmax=max(0.3, float(np.nanmax(M.to_numpy(float)))), aspect="auto")
    ax.set_xticks(range(len(codes)), [labels.get(c, c) for c in codes], rotation=30, ha="right")
    ax.set_yticks(range(len(groups)), [g.replace("_", " ") for g in groups])
    for i in range(len(groups)):
        for j in range(len(codes)):
            v = M.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=8, color="white" if v > 0.2 else "#222")
    ax.spines[:].set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, format=lambda x, _: f"{x:.0%}").ax.set_ylabel("prevalence", fontsize=8)
    return to_svg(fig)


def prevalence_bars(prof: pd.DataFrame, codes: list[str], labels: dict[str, str]) -> str:
    """One panel per code: each group's prevalence with its 95% speaker-bootstrap interval; '' when there is none."""
    if not _drawable(prof, codes):
        return ""
    plt = _plt()
    groups = sorted(prof["group"].unique())
    ncol = 3
    nrow = int(np.ceil(len(codes) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(10, 0.28 * len(groups) * nrow + 1.2 * nrow), squeeze=False, sharex=True)
    top = float(np.nanmax(np.r_[prof["ci_high"].to_numpy(float), prof["prevalence"].to_numpy(float)])) if len(prof) else 0.5
    for k, code in enumerate(codes):
        ax = axes[k // ncol][k % ncol]
        sub = prof[prof["code"] == code].set_index("group").reindex(groups)
        y = np.arange(len(groups))
        ax.barh(y, sub["prevalence"], color=PALETTE[k % len(PALETTE)], alpha=0.85, height=0.6)
        err = np.vstack([sub["prevalence"] - sub["ci_low"], sub["ci_high"] - sub["prevalence"]]).clip(min=0)
        ax.errorbar(sub["prevalence"], y, xerr=err, fmt="none", ecolor="#222", elinewidth=1, capsize=2)
        ax.set_yticks(y, [g.replace("_", " ") for g in groups] if k % ncol == 0 else [""] * len(groups))
        ax.invert_yaxis()
        ax.set_xlim(0, min(1.0, top * 1.1 + 0.02))
        ax.set_title(labels.get(code, code), fontsize=9)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    for k in range(len(codes), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.tight_layout()
    return to_svg(fig)


def reliability(curves: dict[str, pd.DataFrame]) -> str:
    """Reliability diagram: predicted probability vs observed share, one line per curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
    for k, (name, c) in enumerate(curves.items()):
        c = c.dropna(subset=["mean_p", "observed"])
        ax.plot(c["mean_p"], c["observed"], marker="o", ms=4, color=PALETTE[k], label=name)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed share coded")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return to_svg(fig)
