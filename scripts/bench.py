#!/usr/bin/env python
"""End-to-end throughput, caching, memory and growth with corpus size, measured in one run.

For each N (default 10, 20, 40, 80) a corpus of N interviews is built by
resampling the 24 demo interviews (seeded, with replacement; every repeated
copy has its sentences varied by a leading discourse marker, so no excerpt text
repeats and the embedding cache cannot help a cold run). Each N runs in its own
process, which measures, on the same excerpts:

- the pipeline cold (empty embedding cache, new output folder), per stage:
  read, segment, embed, predict, save, profile; and the one-off loading of the
  model, encoder and spaCy;
- the bare encoder (sentence embeddings only, no cache) on the same excerpt texts;
- the model's features with no cache (``model.embed``: for a model with
  sentence vectors, each excerpt and each of its sentences is embedded, about
  twice the encoder's work), so the pipeline's own overhead shows apart from
  what the model asks of the encoder;
- a warm re-run into the same folder (finished documents reused) and a run into
  a new folder with the embedding cache warm;
- peak resident memory of the process.

    python scripts/bench.py [--sizes 10 20 40 80] [--backend torch|onnx-int8]

Writes docs/performance.md (table), docs/performance.json and docs/performance.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "corpora" / "demo"
MARKERS = ["Well", "So", "I mean", "You know", "Honestly", "Look", "Right", "Okay", "Basically", "Actually",
           "Now", "See", "Mind you", "To be fair", "In a way", "Frankly", "Anyway", "Really", "Of course", "Again"]
_SENTENCE_START = re.compile(r"(^|(?<=[.!?]) )([A-Z][a-z’']*)")
STAGES = ["read", "segment", "embed", "predict", "save", "profile"]


def vary(text: str, marker: str) -> str:
    """Put ``marker`` before every sentence of ``text`` (the word after it loses its capital, bar I)."""

    def sub(m: re.Match) -> str:
        word = m.group(2)
        word = word if word == "I" or word.startswith(("I'", "I’")) else word[0].lower() + word[1:]
        return f"{m.group(1)}{marker}, {word}"

    return _SENTENCE_START.sub(sub, text)


def build_corpus(n: int, folder: Path, seed: int = 0) -> Path:
    """N interviews resampled from the demo ones, as .txt files with a manifest and speaker table."""
    from discourse.manifest import read_manifest, read_speakers
    from discourse.study import read_study

    man = read_manifest(DEMO / "manifest.csv")
    spk = read_speakers(DEMO / "speakers.csv")
    study = read_study(man, spk)
    interviews = sorted(d.doc_id for d in study.documents if not d.doc_id.endswith("FG"))
    drawn = np.random.default_rng(seed).choice(interviews, size=n, replace=True)
    folder.mkdir(parents=True, exist_ok=True)
    rows, speakers, seen = [], [], {}
    meta = man.set_index("doc_id")
    for i, src in enumerate(drawn):
        copy = seen[src] = seen.get(src, -1) + 1
        doc_id = f"N{i + 1:03d}"
        turns = study.turns[study.turns["doc_id"] == src]
        lines = []
        for t in turns.itertuples():
            text = t.text if copy == 0 or t.role == "interviewer" else vary(t.text, MARKERS[(copy - 1) % len(MARKERS)])
            lines.append(f"{t.speaker}: {text}\n")
            speakers.append({"doc_id": doc_id, "speaker": t.speaker, "role": t.role})
        (folder / f"{doc_id}.txt").write_text("\n".join(lines), encoding="utf-8")
        rows.append({"doc_id": doc_id, "file": f"{doc_id}.txt", "trust": meta.loc[src, "trust"],
                     "area": meta.loc[src, "area"], "source": src})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    pd.DataFrame(speakers).drop_duplicates().to_csv(folder / "speakers.csv", index=False)
    return folder / "manifest.csv"


def excerpt_texts(manifest: Path, nlp) -> list[str]:
    """The excerpt texts the pipeline will encode (segmented here, before it runs)."""
    from discourse.manifest import read_manifest, read_speakers
    from discourse.segment import segment
    from discourse.study import read_study

    study = read_study(read_manifest(manifest), read_speakers(manifest.parent / "speakers.csv"))
    return segment(study.turns, nlp)["text"].tolist()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(manifest: Path, model, model_key: str, nlp_loader, work: Path) -> tuple[dict, int]:
    """One full run (read, classify, save tables, profile); seconds per stage and excerpt count."""
    from discourse.manifest import read_manifest, read_speakers
    from discourse.pipeline import STAGES as CLASSIFY_STAGES
    from discourse.pipeline import SegmentSettings, classify_study
    from discourse.profiles import profiles
    from discourse.study import read_study
    from discourse.tables import write_table

    sec = {}
    t = time.perf_counter()
    study = read_study(read_manifest(manifest), read_speakers(manifest.parent / "speakers.csv"))
    sec["read"] = time.perf_counter() - t
    t = time.perf_counter()
    pred, stats = classify_study(study, model, model_key, nlp_loader, work / ".cache", SegmentSettings())
    total = time.perf_counter() - t
    sec.update(stats["seconds"])
    t = time.perf_counter()
    write_table(pred, work / "predictions.parquet")
    write_table(pred, work / "predictions.csv")
    sec["save"] = total - sum(stats["seconds"][k] for k in CLASSIFY_STAGES) + time.perf_counter() - t
    t = time.perf_counter()
    profiles(pred, model.codes, [["role"], ["trust"], ["trust", "role"]])
    sec["profile"] = time.perf_counter() - t
    return sec, len(pred)


def is_encoder(where: str) -> bool:
    """Whether a profiled function belongs to the encoder (torch, onnxruntime, tokenizers, our onnx runner)."""
    return any(k in where for k in ("torch", "onnx", "transformers", "tokenizers", "modeling_", "module.py:"))


def top_functions(stats, limit: int = 12) -> list[dict]:
    """The functions with the most self time in a cProfile run, and whether they are the encoder's."""
    rows = []
    total = sum(v[2] for v in stats.stats.values())
    for (file, line, func), (_, _, tottime, _, _) in stats.stats.items():
        name = f"{Path(file).name}:{line}({func})"
        rows.append({"function": name, "self_s": tottime, "share": tottime / total, "encoder": is_encoder(file + name)})
    rows.sort(key=lambda r: -r["self_s"])
    return [{**r, "self_s": round(r["self_s"], 2), "share": round(r["share"], 4)} for r in rows[:limit]]


def profiled_run(manifest: Path, model, key: str, nlp, work: Path) -> list[dict]:
    """A cold run (empty embedding cache) under cProfile; the top functions by self time."""
    import cProfile
    import pstats

    model.encoder.cache = None  # nothing cached: the encoder must show if it dominates
    prof = cProfile.Profile()
    prof.enable()
    run_pipeline(manifest, model, key, lambda: nlp, work)
    prof.disable()
    return top_functions(pstats.Stats(prof))


def one(n: int, backend: str, model_dir: Path, tmp: Path, seed: int, profile: bool = False,
        bare_sample: int = 800) -> dict:
    """Everything measured for one N, in this process."""
    from discourse.embed import EmbeddingCache, Encoder
    from discourse.model import DiscourseClassifier, read_model_manifest
    from discourse.pipeline import model_fingerprint
    from discourse.segment import load_pipeline

    manifest = build_corpus(n, tmp / "corpus", seed)
    name = read_model_manifest(model_dir)["encoder"]["name"]
    t = time.perf_counter()
    # the exported onnx model, if any, stays in the user's cache; the model's own (tuned) encoder
    model = DiscourseClassifier.load(model_dir, encoder=Encoder(name, backend=backend))
    enc = model.encoder
    enc.cache = EmbeddingCache(tmp / "cache", enc.id, backend)  # but the embedding cache starts empty
    _ = enc.onnx if backend == "onnx-int8" else enc.model  # built once per machine: not part of a run
    enc.encode([f"A first sentence, number {i}, to warm the encoder up." for i in range(16)])  # as the bare one is
    nlp = load_pipeline("parser")
    load = time.perf_counter() - t
    key = model_fingerprint(model_dir)
    study_texts = excerpt_texts(manifest, nlp)
    cache = enc.cache

    def uncached(work):
        """``work`` run by the same loaded encoder with no embedding cache."""
        def run(texts: list[str]) -> None:
            enc.cache = None
            try:
                work(texts)
            finally:
                enc.cache = cache
        return run

    bare_encode = uncached(enc.encode)  # sentence embeddings only
    bare_features = uncached(model.embed)  # the model's embedding features: what the classifier asks of the encoder
    sample = study_texts if len(study_texts) <= bare_sample else \
        [study_texts[i] for i in sorted(np.random.default_rng(seed).choice(len(study_texts), bare_sample, replace=False))]
    half = len(sample) // 2
    t = time.perf_counter()
    bare_encode(sample[:half])  # half the bare encoder's sample before the pipeline, half after: drifts cancel
    bare = time.perf_counter() - t
    t = time.perf_counter()
    bare_features(sample[:half])
    feats = time.perf_counter() - t
    cold, n_ex = run_pipeline(manifest, model, key, lambda: nlp, tmp / "out")
    t = time.perf_counter()
    bare_features(sample[half:])
    feats = (feats + time.perf_counter() - t) * len(study_texts) / len(sample)
    t = time.perf_counter()
    bare_encode(sample[half:])
    bare = (bare + time.perf_counter() - t) * len(study_texts) / len(sample)  # seconds for all the excerpts
    t = time.perf_counter()
    run_pipeline(manifest, model, key, lambda: nlp, tmp / "out")
    warm = time.perf_counter() - t
    t = time.perf_counter()
    run_pipeline(manifest, model, key, lambda: nlp, tmp / "out-embeddings-cached")
    warm_embed = time.perf_counter() - t
    rss = peak_rss_mb()
    texts = pd.read_parquet(tmp / "out" / "predictions.parquet")["text"].tolist()
    assert sorted(texts) == sorted(study_texts), "the bare encoder must see the pipeline's excerpts"
    words = int(pd.read_parquet(tmp / "out" / "predictions.parquet")["n_words"].sum())
    cold_total = sum(cold.values())
    hot = profiled_run(manifest, model, key, nlp, tmp / "out-profiled") if profile else None
    return {
        "profile_top_functions": hot,
        "n": n, "backend": backend, "encoder": name, "excerpts": n_ex, "unique_texts": len(set(texts)), "words": words,
        "load_s": round(load, 2), "cold_s": {k: round(cold[k], 3) for k in STAGES}, "cold_total_s": round(cold_total, 2),
        "end_to_end_excerpts_per_s": round(n_ex / cold_total, 2),
        "end_to_end_with_load_excerpts_per_s": round(n_ex / (cold_total + load), 2),
        "bare_encoder_s": round(bare, 2), "bare_encoder_sample": len(sample), "bare_encoder_excerpts_per_s": round(len(texts) / bare, 2),
        "ratio_end_to_end_to_encoder": round(bare / cold_total, 3),
        "sentence_max": bool(model.config.sentence_max),
        "model_features_s": round(feats, 2), "model_features_excerpts_per_s": round(len(texts) / feats, 2),
        "ratio_end_to_end_to_model_features": round(feats / cold_total, 3),
        "warm_rerun_s": round(warm, 3), "warm_speedup": round(cold_total / warm, 1),
        "embeddings_cached_s": round(warm_embed, 2), "embeddings_cached_speedup": round(cold_total / warm_embed, 1),
        "peak_rss_mb": round(rss),
    }


def linear_fit(x: list[float], y: list[float]) -> dict:
    a, b = np.polyfit(x, y, 1)
    pred = np.polyval([a, b], x)
    r2 = 1 - np.sum((np.asarray(y) - pred) ** 2) / np.sum((np.asarray(y) - np.mean(y)) ** 2)
    return {"seconds_per_interview": round(float(a), 3), "intercept_s": round(float(b), 2), "r2": round(float(r2), 4)}


def stage_table(results: list[dict]) -> list[str]:
    head = ("| N | excerpts | cold s | " + " | ".join(f"{s} %" for s in STAGES)
            + " | end-to-end ex/s | bare encoder ex/s | ratio | model's features ex/s | ratio to features"
            + " | warm re-run s | warm speed-up"
            + " | embeddings cached s | load s | peak RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        shares = " | ".join(f"{100 * r['cold_s'][s] / r['cold_total_s']:.1f}" for s in STAGES)
        lines.append(f"| {r['n']} | {r['excerpts']} | {r['cold_total_s']} | {shares} | {r['end_to_end_excerpts_per_s']}"
                     f" | {r['bare_encoder_excerpts_per_s']} | {r['ratio_end_to_end_to_encoder']}"
                     f" | {r.get('model_features_excerpts_per_s', '-')} | {r.get('ratio_end_to_end_to_model_features', '-')}"
                     f" | {r['warm_rerun_s']}"
                     f" | {r['warm_speedup']}x | {r['embeddings_cached_s']} | {r['load_s']} | {r['peak_rss_mb']} |")
    return lines


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(5 * (len(runs) + 1), 4))
    for ax, (backend, results) in zip(axes, runs.items()):
        ns = [r["n"] for r in results]  # a numeric axis, so linear growth looks linear
        bottom = np.zeros(len(ns))
        for stage in STAGES:
            vals = np.array([r["cold_s"][stage] for r in results])
            ax.bar(ns, vals, bottom=bottom, width=0.08 * max(ns), label=stage)
            bottom += vals
        ax.plot(ns, [r["bare_encoder_s"] for r in results], "k--o", label="bare encoder")
        ax.set(xlabel="interviews (N)", ylabel="seconds, cold run", title=f"Time per stage ({backend})")
        ax.legend(fontsize=8)
    for backend, results in runs.items():
        axes[-1].plot([r["n"] for r in results], [r["peak_rss_mb"] for r in results], "o-", label=backend)
    axes[-1].axhline(1536, color="grey", ls=":", label="1.5 GB")
    axes[-1].set(xlabel="interviews (N)", ylabel="MB", title="Peak resident memory", ylim=(0, None))
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_outputs(runs: dict[str, list[dict]], out_md: Path, command: str) -> dict:
    """docs/performance.{md,json,png} from the measurements of every backend."""
    import platform

    import torch

    summary = {"command": command, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
               "runs": {b: {"results": rs, "cold_time_vs_n": linear_fit([r["n"] for r in rs], [r["cold_total_s"] for r in rs])}
                        for b, rs in runs.items()}}
    out_md.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(runs, out_md.with_suffix(".png"))
    md = [
        "# Performance",
        "",
        f"Measured by `{command}` on {os.cpu_count()} cores (Python {platform.python_version()}, torch "
        f"{torch.__version__}); the numbers below and `performance.json` are the output, `performance.png` the figure.",
        "",
        "Each N is a corpus of N interviews resampled (seeded, with replacement) from the 24 demo interviews; a "
        "repeated interview has every sentence varied by a leading discourse marker, so no excerpt repeats and the "
        "embedding cache cannot help a cold run. Each N runs in a fresh process, which measures on the same "
        "excerpts: the cold pipeline (empty embedding cache, new output folder) stage by stage (read transcripts; "
        "segment with spaCy; embed; predict = TF-IDF, classifiers, calibration; save = per-document cache and "
        "predictions tables; profile = prevalence with speaker bootstrap by role, trust and both); the bare encoder "
        "(sentence embeddings of the same excerpt texts, no cache; on a seeded random sample of at most 800 of them, "
        "scaled to all); a warm re-run into the same folder (finished documents reused); a run into a new folder with "
        "the embedding cache warm; and the process's peak resident memory. `load` (imports, model, encoder, spaCy) "
        "is paid once per process and is not in the cold time. *ratio* = bare encoder seconds / cold pipeline seconds "
        "(end-to-end throughput as a share of the encoder's). *model's features* = the same excerpts through "
        "`model.embed` with no cache: what the model asks of the encoder (with sentence vectors, every excerpt and "
        "each of its sentences); *ratio to features* = those seconds / cold pipeline seconds, so the pipeline's own "
        "overhead is 1 - that ratio.",
        "",
        "![time per stage and memory](performance.png)",
        "",
    ]
    for backend, rs in runs.items():
        fit = summary["runs"][backend]["cold_time_vs_n"]
        n_max = max(rs, key=lambda r: r["n"])
        md += [f"## Encoder backend `{backend}` ({rs[0]['encoder']})", ""] + stage_table(rs) + [
            "",
            f"- Cold time grows linearly with N: {fit['intercept_s']} s + {fit['seconds_per_interview']} s per "
            f"interview (R² {fit['r2']}); per excerpt, as a multiple of the bare encoder's time in the same run "
            f"(which drifts with the machine's load), it is flat: "
            + ", ".join(f"{1 / r['ratio_end_to_end_to_encoder']:.2f}" for r in rs) + " at N = "
            + ", ".join(str(r["n"]) for r in rs) + ".",
            f"- End-to-end / bare encoder: {min(r['ratio_end_to_end_to_encoder'] for r in rs)} to "
            f"{max(r['ratio_end_to_end_to_encoder'] for r in rs)} (target ≥ 0.8: "
            + ("met" if min(r['ratio_end_to_end_to_encoder'] for r in rs) >= 0.8 else "**not met** by this model")
            + ")"
            + (f"; end-to-end / the model's features: {min(r['ratio_end_to_end_to_model_features'] for r in rs)} to "
               f"{max(r['ratio_end_to_end_to_model_features'] for r in rs)}. This model embeds every sentence of an "
               "excerpt as well as the excerpt (sentence vectors, `docs/model-selection.md`), so the encoder does "
               "about twice the bare encoder's work; the pipeline's own overhead is the gap between the last ratio "
               "and 1. A model trained with `discourse train --no-sentence-max` asks the encoder for the excerpts "
               "only, and runs at close to the bare encoder's speed (the earlier model without sentence vectors, "
               "measured by this script on an earlier machine, onnx-int8 with its first recipe: 0.957 to 1.002 "
               "with torch, 0.825 to 0.895 with onnx-int8)"
               if all(r.get("sentence_max") for r in rs) else "") + ".",
            f"- Warm re-run: {min(r['warm_speedup'] for r in rs)}x to {max(r['warm_speedup'] for r in rs)}x faster "
            f"than cold (target ≥ 20x); with only the embeddings cached (segmenting again, new folder): "
            f"{min(r['embeddings_cached_speedup'] for r in rs)}x to {max(r['embeddings_cached_speedup'] for r in rs)}x.",
            f"- Peak memory at N = {n_max['n']}: {n_max['peak_rss_mb']} MB (target ≤ 1,536 MB).",
            "",
        ]
        hot = next((r["profile_top_functions"] for r in rs if r.get("profile_top_functions")), None)
        if hot:
            share = sum(h["share"] for h in hot if h["encoder"])
            md += [f"Where a cold run at N = {min(r['n'] for r in rs)} spends its time (cProfile, self time, top "
                   f"{len(hot)} functions; the encoder's own take {100 * share:.1f}% of all time):", "",
                   "| function | self s | share | encoder |", "|---|---|---|---|"]
            md += [f"| `{h['function']}` | {h['self_s']} | {100 * h['share']:.1f}% | {'yes' if h['encoder'] else 'no'} |"
                   for h in hot] + [""]
    out_md.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx-int8"], help="Encoder backends to measure (torch, onnx-int8).")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md",
                    help="Markdown report; .json and .png are written beside it.")
    ap.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true", help="Only rewrite the .md and .png from the .json beside --out.")
    args = ap.parse_args()
    if args.render:
        summary = json.loads(args.out.with_suffix(".json").read_text())
        runs = {b: r["results"] for b, r in summary["runs"].items()}
        for rs in runs.values():
            for r in rs:
                for h in r.get("profile_top_functions") or []:
                    h["encoder"] = is_encoder(h["function"])
        write_outputs(runs, args.out, summary["command"])
        return 0
    if args.one is not None:
        with tempfile.TemporaryDirectory(prefix="discourse-bench-") as tmp:
            print(json.dumps(one(args.one, args.backend, args.model, Path(tmp), args.seed,
                                 profile=args.one == min(args.sizes))))
        return 0
    runs: dict[str, list[dict]] = {}
    for backend in args.backends:
        for n in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--sizes", *map(str, args.sizes),
                                   "--backend", backend, "--model", str(args.model), "--seed", str(args.seed)],
                                  check=False, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            runs.setdefault(backend, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps({k: v for k, v in runs[backend][-1].items() if k != "profile_top_functions"}), file=sys.stderr)
    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    write_outputs(runs, args.out, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
