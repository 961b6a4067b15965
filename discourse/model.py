"""The classifier: multi-label, any codebook, calibrated probabilities, a threshold per code.

scikit-learn style: ``fit(texts, code_sets)``, ``predict_proba(texts)``,
``predict(texts)``, ``save(folder)``, ``DiscourseClassifier.load(folder)``.

Features are sentence embeddings (the excerpt's, and beside it the elementwise
maximum of its sentences' embeddings: ``sentences.py``), TF-IDF n-grams, or
both side by side; one logistic regression per code scores them. The encoder
can be frozen, or its top layers tuned on the training excerpts
(``tune.py``), inside every cross-validation fold as well, so the out-of-fold
scores stay honest. Scores become probabilities by Platt scaling fitted on
out-of-fold scores from grouped cross-validation (grouped by source document
or batch, never by excerpt), and each code's decision threshold is the one
that maximised F1 on those same out-of-fold probabilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .errors import DiscourseError
from .evaluate import (
    agreement_table,
    expected_calibration_error,
    reliability_curve,
    to_matrix,
    without_nan,
)
from .sentences import with_sentence_max
from .tables import sha256_file
from .tune import ADAPTER_FILE, TunedStates

FEATURES = ("embedding", "tfidf", "embedding+tfidf")
ESTIMATOR_FILE = "estimator.skops"
MANIFEST_FILE = "manifest.json"
SAFE_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


@dataclass
class ModelConfig:
    """Hyper-parameters (chosen by measurement: docs/model-selection.md)."""

    features: str = "embedding+tfidf"
    C: float = 4.0
    tfidf_weight: float = 2.0
    ngram_max: int = 2
    min_df: int = 2
    cv_folds: int = 5
    seed: int = 0
    uncoded_weight: float = 1.0  # weight of uncoded excerpts in training (realistic priors)
    tune_layers: int = 4  # top encoder layers tuned on the excerpts (0: frozen encoder; tune.py)
    tune_epochs: int = 3
    tune_rank: int = 0  # 0: full weights of the tuned layers (measured better here than low-rank adapters)
    tune_delta_rank: int = 64  # full weights: rank at which each matrix's change is stored (0: whole matrices)
    sentence_max: bool = True  # embedding features add the max over the excerpt's sentence embeddings (sentences.py)

    def __post_init__(self):
        if self.features not in FEATURES:
            raise DiscourseError(f"unknown features '{self.features}': use {', '.join(FEATURES)}")
        if "embedding" not in self.features:
            self.tune_layers = 0  # nothing to tune

    def tuning(self):
        """The encoder-tuning settings, or None for a frozen encoder."""
        from .tune import TuneConfig

        if not self.tune_layers:
            return None
        return TuneConfig(layers=self.tune_layers, rank=self.tune_rank, delta_rank=self.tune_delta_rank,
                          epochs=self.tune_epochs, seed=self.seed)


def _hash_texts(texts: Sequence[str], code_sets: Sequence[Sequence[str]]) -> str:
    h = hashlib.sha256()
    for t, cs in zip(texts, code_sets):
        h.update(t.encode("utf-8") + b"\x00" + ";".join(sorted(cs)).encode() + b"\x01")
    return h.hexdigest()


def _fold_ids(n: int, groups: Sequence | None, k: int, y_any: np.ndarray, seed: int) -> np.ndarray:
    """Fold number per excerpt: grouped when groups are given, else stratified by 'any code'."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    fold = np.zeros(n, dtype=int)
    if groups is not None:
        splitter = GroupKFold(n_splits=k).split(np.zeros(n), y_any, groups=np.asarray(groups))
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y_any)
    for i, (_, test) in enumerate(splitter):
        fold[test] = i
    return fold


def _platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit p = 1 / (1 + exp(-(a*s + b))) by logistic regression on one score."""
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return 0.0, float(np.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3)))
    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(scores.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises F1 (ties: the one nearest 0.5)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    best, best_f1 = 0.5, -1.0
    for t in sorted(grid, key=lambda t: abs(t - 0.5)):
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        f1 = 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), f1
    return best


class DiscourseClassifier:
    """Multi-label discourse classifier with calibrated probabilities.

    >>> clf = DiscourseClassifier(codes, encoder=Encoder())  # config=ModelConfig(tune_layers=0): frozen, quicker
    >>> clf.fit(texts, code_sets, groups=batches)           # by default tunes the encoder's top 4 layers first
    >>> clf.predict_proba(["We answer to our customers."])

    After ``fit``, ``cv_proba_`` holds every training excerpt's calibrated
    out-of-fold probabilities (rows in input order) and ``cv_folds_`` the fold
    that scored it: the evidence behind ``cv_``, for error analysis. Neither
    is saved with the model.
    """

    def __init__(self, codes: Sequence[str], encoder=None, config: ModelConfig | None = None, **params):
        self.codes = list(codes)
        self.encoder = encoder
        self.config = config or ModelConfig(**params)
        if "embedding" in self.config.features and encoder is None:
            raise DiscourseError("an encoder is needed for embedding features")
        self.vectorizer_ = None
        self.estimators_: list = []
        self.platt_: list[tuple[float, float]] = []
        self.thresholds_: list[float] = []
        self.cv_: dict = {}
        self.cv_proba_: np.ndarray | None = None
        self.cv_folds_: np.ndarray | None = None
        self.info_: dict = {}
        self.adapter_ = None

    # --- features ---------------------------------------------------------------

    def _new_vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=(1, self.config.ngram_max), min_df=self.config.min_df,
                               sublinear_tf=True, strip_accents="unicode", lowercase=True, dtype=np.float32)

    def _matrix(self, texts, emb, vectorizer, fit: bool):
        parts = []
        if "embedding" in self.config.features:
            parts.append(sp.csr_matrix(emb))
        if "tfidf" in self.config.features:
            X = vectorizer.fit_transform(texts) if fit else vectorizer.transform(texts)
            parts.append(X * self.config.tfidf_weight)
        return sp.hstack(parts, format="csr")

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray | None:
        """The embedding features of ``texts`` (with ``sentence_max``: excerpt and sentence-max vectors)."""
        if "embedding" not in self.config.features:
            return None
        if self.config.sentence_max:
            return with_sentence_max(texts, lambda t: self.encoder.encode(t, progress=progress))
        return self.encoder.encode(list(texts), progress=progress)

    def _fit_scores(self, texts, emb, Y, weights, test_texts, test_emb):
        """Fit on one set, return decision scores on another (one column per code)."""
        from sklearn.linear_model import LogisticRegression

        vec = self._new_vectorizer() if "tfidf" in self.config.features else None
        X = self._matrix(texts, emb, vec, fit=True)
        Xt = self._matrix(test_texts, test_emb, vec, fit=False)
        ests, scores = [], np.zeros((len(test_texts), Y.shape[1]))
        for j in range(Y.shape[1]):
            lr = LogisticRegression(C=self.config.C, solver="liblinear", max_iter=2000, random_state=self.config.seed)
            lr.fit(X, Y[:, j], sample_weight=weights)
            ests.append(lr)
            scores[:, j] = lr.decision_function(Xt)
        return vec, ests, scores

    # --- estimator API ----------------------------------------------------------

    def fit(self, texts: Sequence[str], code_sets: Sequence[Sequence[str]], groups: Sequence | None = None,
            embeddings: np.ndarray | None = None, progress: bool = False) -> "DiscourseClassifier":
        texts = [str(t) for t in texts]
        unknown = sorted({c for cs in code_sets for c in cs} - set(self.codes))
        if unknown:
            raise DiscourseError(f"training data has codes not in the codebook: {', '.join(unknown)}")
        Y = to_matrix(code_sets, self.codes)
        counts = Y.sum(axis=0)
        few = [f"{c} ({n})" for c, n in zip(self.codes, counts) if n < 5]
        if few:
            raise DiscourseError(
                f"each code needs at least 5 coded examples to learn from; too few: {', '.join(few)}"
            )
        everywhere = [f"{c} ({len(Y) - n} without)" for c, n in zip(self.codes, counts) if len(Y) - n < 5]
        if everywhere:
            raise DiscourseError(
                f"each code needs at least 5 excerpts without it to learn from; too few: {', '.join(everywhere)}"
            )
        threads = _torch_threads() if "embedding" in self.config.features else None  # as tuning and embedding ran
        tuning = self.config.tuning()
        if tuning and embeddings is not None:
            raise DiscourseError("precomputed embeddings cannot be used when the encoder is tuned")
        weights = np.where(Y.any(axis=1), 1.0, self.config.uncoded_weight)
        k = self.config.cv_folds
        grouped = groups is not None and len(set(groups)) >= 2
        if grouped:
            k = min(k, len(set(groups)))  # fewer groups than folds: leave one group out
        folds = _fold_ids(len(texts), groups if grouped else None, k, Y.any(axis=1), self.config.seed)
        _check_folds(folds, Y, self.codes, groups if grouped else None)
        if tuning:
            from tqdm import tqdm

            from .tune import Tuner

            if self.encoder.adapter is not None:
                raise DiscourseError("this encoder is already tuned: tune from the base encoder, or set tune_layers=0")
            tuner = Tuner(self.encoder.model, tuning)
            states = TunedStates(tuner, texts, self.config.sentence_max)
            rows_tuned = sum(int(np.sum(folds != f)) for f in range(k)) + len(texts)  # every fold, then all
            bar = tqdm(total=tuning.epochs * rows_tuned, desc="tuning the encoder", unit="excerpt", leave=False,
                       disable=not progress)

            def features(rows: np.ndarray, other: np.ndarray | None = None):
                """Tune on ``rows``; the tuned embeddings of ``rows`` and of ``other``, in one pass."""
                adapter = tuner.fit([states.H[i] for i in rows], Y[rows], progress=bar.update)
                both = rows if other is None else np.concatenate([rows, other])
                X = states.features(adapter, both)
                return adapter, X[: len(rows)], X[len(rows):]
        else:
            emb = embeddings if embeddings is not None else self.embed(texts, progress=progress)
        oof = np.zeros(Y.shape)
        for f in range(k):
            tr, te = np.where(folds != f)[0], np.where(folds == f)[0]
            if tuning:
                _, emb_tr, emb_te = features(tr, te)
            else:
                emb_tr, emb_te = (None, None) if emb is None else (emb[tr], emb[te])
            _, _, s = self._fit_scores([texts[i] for i in tr], emb_tr, Y[tr], weights[tr], [texts[i] for i in te], emb_te)
            oof[te] = s
        if tuning:
            self.adapter_, emb, _ = features(np.arange(len(texts)))
            self.encoder = self.encoder.tuned(self.adapter_)
            bar.close()
        self.platt_ = [_platt(oof[:, j], Y[:, j]) for j in range(len(self.codes))]
        P = self._calibrate(oof)
        self.thresholds_ = [best_threshold(Y[:, j], P[:, j]) for j in range(len(self.codes))]
        self.cv_proba_, self.cv_folds_ = P, folds
        self.cv_ = {
            "folds": k,
            "grouped_by": "groups" if grouped else "stratified excerpts",
            **_agreement(Y, P, P >= np.asarray(self.thresholds_), self.codes),
            "reliability": without_nan([{k: round(float(v), 4) for k, v in r.items()}
                                        for r in reliability_curve(Y, P).to_dict("records")]),
            "nested": _nested_metrics(oof, Y, folds, self.codes),
        }
        self.vectorizer_, self.estimators_, _ = self._fit_scores(texts, emb, Y, weights, texts[:1],
                                                                  None if emb is None else emb[:1])
        self.info_ = {
            "n_train": len(texts),
            "train_prior": {c: float(m) for c, m in zip(self.codes, Y.mean(axis=0))},
            "training_data_sha256": _hash_texts(texts, code_sets),
            **({"reproducibility": {"torch_threads": threads}} if threads else {}),
        }
        return self

    def _calibrate(self, scores: np.ndarray) -> np.ndarray:
        a = np.array([p[0] for p in self.platt_])
        b = np.array([p[1] for p in self.platt_])
        return _sigmoid(scores * a + b)

    def decision_function(self, texts: Sequence[str], embeddings: np.ndarray | None = None,
                          progress: bool = False) -> np.ndarray:
        if not self.estimators_:
            raise DiscourseError("the model is not trained")
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.codes)))
        emb = embeddings if embeddings is not None else self.embed(texts, progress=progress)
        X = self._matrix(texts, emb, self.vectorizer_, fit=False)
        return np.column_stack([e.decision_function(X) for e in self.estimators_])

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray | None = None,
                      progress: bool = False) -> np.ndarray:
        """Calibrated probability per excerpt and code (rows: texts, columns: ``self.codes``);
        ``progress`` shows a bar on stderr while texts are encoded."""
        return self._calibrate(self.decision_function(texts, embeddings, progress=progress))

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[list[str]]:
        """Assigned code sets (probability at or above each code's threshold)."""
        return self.codes_from_proba(self.predict_proba(texts, embeddings))

    def codes_from_proba(self, P: np.ndarray) -> list[list[str]]:
        hit = P >= np.asarray(self.thresholds_)
        return [[c for c, h in zip(self.codes, row) if h] for row in hit]

    # --- persistence --------------------------------------------------------------

    def save(self, folder: str | os.PathLike, codebook=None, extra: dict | None = None) -> Path:
        """Write ``estimator.skops`` and ``manifest.json`` (with a sha256 per file) to ``folder``."""
        import skops.io as sio

        from .tables import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        created = _created_time()  # before any file is touched: a bad SOURCE_DATE_EPOCH leaves the old model whole
        encoder_info = None
        if self.encoder is not None and "embedding" in self.config.features:
            local = getattr(self.encoder, "local_path", None)  # a packaged encoder is found by name
            encoder_info = {"name": self.encoder.name, **({"path": str(local)} if local else {}),
                            "id": self.encoder.id, "dim": self.encoder.dim,
                            "backend": getattr(self.encoder, "backend", "torch")}
        # Every file is written to a temporary name first; they are renamed into place together at the end
        # (manifest first, so nothing is renamed unless all were written), so a failure leaves the old model whole.
        with contextlib.ExitStack() as stack:
            written = {ESTIMATOR_FILE: stack.enter_context(atomic_path(folder / ESTIMATOR_FILE))}
            sio.dump({"vectorizer": self.vectorizer_, "estimators": self.estimators_}, written[ESTIMATOR_FILE])
            if self.adapter_ is not None:
                written[ADAPTER_FILE] = stack.enter_context(atomic_path(folder / ADAPTER_FILE))
                written[ADAPTER_FILE].write_bytes(self.adapter_.to_bytes())
                encoder_info["adapter"] = {"file": ADAPTER_FILE, "base_id": self.encoder.base_id,
                                           "layers": self.config.tune_layers, "rank": self.config.tune_rank,
                                           "delta_rank": self.config.tune_delta_rank, "epochs": self.config.tune_epochs}
            manifest = {
                "format": "discourse-model/1",
                "codes": self.codes,
                "codebook": codebook.to_dict() if codebook is not None else None,
                "codebook_sha256": codebook.sha256 if codebook is not None else None,
                "encoder": encoder_info,
                "config": asdict(self.config),
                "platt": [list(p) for p in self.platt_],
                "thresholds": dict(zip(self.codes, self.thresholds_)),
                "cross_validation": self.cv_,
                **self.info_,
                "versions": _versions(),
                "created": created,
                **(extra or {}),
                "files": {name: sha256_file(tmp) for name, tmp in written.items()},
            }
            tmp = stack.enter_context(atomic_path(folder / MANIFEST_FILE))
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if self.adapter_ is None and (folder / ADAPTER_FILE).exists():
            (folder / ADAPTER_FILE).unlink()  # left by an earlier tuned model in this folder
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, codebook=None, encoder=None, backend: str | None = None) -> "DiscourseClassifier":
        """Load a saved model, verifying file hashes, codebook and encoder; refuses mismatches.

        ``backend`` (torch or onnx-int8; default ``embed.DEFAULT_BACKEND``) is how the encoder runs
        when ``encoder`` is not given;
        the model was trained with the same weights whatever backend embedded its training data.
        """
        import skops.io as sio

        folder = Path(folder)
        manifest = read_model_manifest(folder)
        for name, digest in manifest.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                raise DiscourseError(f"model file {name} is missing", folder)
            if sha256_file(path) != digest:
                raise DiscourseError(
                    f"{name} does not match the sha256 in manifest.json: the model was changed or damaged; retrain or restore it",
                    folder,
                )
        est_path = folder / ESTIMATOR_FILE
        if ESTIMATOR_FILE not in manifest.get("files", {}):
            raise DiscourseError(f"manifest.json records no sha256 for {ESTIMATOR_FILE}", folder)
        untrusted = sio.get_untrusted_types(file=est_path)
        bad = [t for t in untrusted if not t.startswith(SAFE_TYPE_PREFIXES)]
        if bad:
            raise DiscourseError(f"the estimator contains types that are not allowed: {', '.join(bad[:5])}", est_path)
        state = sio.load(est_path, trusted=untrusted)
        ests = state.get("estimators") if isinstance(state, dict) else None
        if not isinstance(ests, list) or len(ests) != len(manifest["codes"]) or not all(hasattr(e, "decision_function") for e in ests):
            raise DiscourseError("the estimator file does not hold one classifier per code: not a discourse model", est_path)
        if codebook is not None and manifest.get("codebook_sha256") and codebook.sha256 != manifest["codebook_sha256"]:
            raise DiscourseError(
                f"the model was trained with codebook '{(manifest.get('codebook') or {}).get('name')}' "
                f"({manifest['codebook_sha256'][:12]}), not with '{codebook.name}' ({codebook.sha256[:12]}): "
                "use the model's own codebook or retrain",
                folder,
            )
        config = config_from_manifest(manifest)
        enc_info = manifest.get("encoder")
        adapter = None
        if enc_info and enc_info.get("adapter"):
            from .tune import Adapter

            name = enc_info["adapter"]["file"]
            if name not in manifest["files"]:
                raise DiscourseError(f"manifest.json records no sha256 for {name}", folder)
            adapter = Adapter.from_bytes((folder / name).read_bytes(), folder / name)
        if enc_info:
            if encoder is None:
                encoder = _saved_encoder(enc_info, backend, folder)
            if adapter is not None and encoder.adapter is None and encoder.id == enc_info["adapter"]["base_id"]:
                encoder = encoder.tuned(adapter)  # the encoder as given, with this model's tuned layers
            if encoder.id != enc_info["id"]:
                raise DiscourseError(
                    f"the model was trained with encoder {enc_info['id']}, but {encoder.id} is in use: "
                    f"{_mismatch_advice(enc_info, encoder)}",
                    folder,
                )
        model = cls(manifest["codes"], encoder=encoder, config=config)
        model.vectorizer_ = state["vectorizer"]
        model.estimators_ = state["estimators"]
        model.platt_ = [tuple(p) for p in manifest["platt"]]
        model.thresholds_ = [float(manifest["thresholds"][c]) for c in model.codes]
        model.cv_ = manifest.get("cross_validation", {})
        model.info_ = {k: manifest[k] for k in ("n_train", "train_prior", "training_data_sha256") if k in manifest}
        model.adapter_ = adapter
        model.manifest_ = manifest
        return model


def _saved_encoder(enc_info: dict, backend: str | None, folder: Path):
    """The encoder a manifest names: a packaged one by name, a local one at its recorded folder.

    Models saved before the folder was recorded name a local encoder by its folder's name only, which is
    looked for in the current directory (the id check then tells whether it is the same encoder).
    """
    from .embed import DEFAULT_BACKEND, Encoder

    where = enc_info.get("path")
    if where and not Path(where).is_dir():
        raise DiscourseError(f"the model needs its encoder folder at {where}, which is missing: restore it there "
                             "or retrain", folder)
    return Encoder(where or enc_info["name"], backend=backend or DEFAULT_BACKEND)


def _mismatch_advice(enc_info: dict, encoder) -> str:
    """What to do when the encoder in use is not the model's."""
    from .encoders import _fingerprint

    local = getattr(encoder, "local_path", None)
    if local and not enc_info.get("path") and enc_info["id"].split("+")[0] == f"{encoder.name}-{_fingerprint(local)}":
        return ("the model was saved by an older version, which identified a local encoder by its file sizes "
                "only: retrain it")
    return "use the same encoder or retrain"


def config_from_manifest(manifest: dict) -> ModelConfig:
    """The settings a saved model was trained with (models saved before ``sentence_max`` existed had none)."""
    return ModelConfig(**{"sentence_max": False, **manifest["config"]})


def read_model_manifest(folder: str | os.PathLike) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise DiscourseError("model folder not found", folder)
    if not path.is_file():
        raise DiscourseError("not a model folder (no manifest.json)", folder)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DiscourseError(f"manifest.json is not valid JSON ({exc})", folder) from None
    for key in ("codes", "config", "platt", "thresholds", "files"):
        if key not in manifest:
            raise DiscourseError(f"manifest.json has no '{key}'", folder)
    return manifest


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("discourse", "scikit-learn", "sentence-transformers", "torch", "spacy", "numpy", "skops"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _nested_metrics(oof: np.ndarray, Y: np.ndarray, folds: np.ndarray, codes: list[str]) -> dict:
    """Cross-validated agreement with each fold's Platt scaling and thresholds chosen on the other folds' scores.

    The model's own scaling and thresholds are chosen on all out-of-fold scores, so agreement measured on those
    same scores flatters it (by about 0.01 macro-F1 at 2,300 excerpts, several times that at a few hundred).
    Here no fold is scored with a threshold it helped choose: what a new batch of excerpts would meet.
    """
    P = np.zeros_like(oof)
    C = np.zeros(oof.shape, dtype=bool)
    for f in np.unique(folds):
        rest, held = folds != f, folds == f
        for j in range(Y.shape[1]):
            a, b = _platt(oof[rest, j], Y[rest, j])
            P[held, j] = _sigmoid(oof[held, j] * a + b)
            C[held, j] = P[held, j] >= best_threshold(Y[rest, j], _sigmoid(oof[rest, j] * a + b))
    return _agreement(Y, P, C, codes)


def _agreement(Y: np.ndarray, P: np.ndarray, C: np.ndarray, codes: list[str]) -> dict:
    """Macro-F1, ECE and per-code precision, recall, F1 and kappa of probabilities ``P`` and codes ``C``."""
    table = agreement_table(Y, C, codes)
    return {
        "macro_f1": float(table.loc[table.code == "macro", "f1"].iloc[0]),
        "ece": expected_calibration_error(Y, P),
        "per_code": table.set_index("code")[["precision", "recall", "f1", "kappa"]].round(4).to_dict("index"),
    }


def _torch_threads() -> int:
    """torch's thread count: the tuned layers' bytes depend on it (and, on some processors, the vectors' last bits)."""
    import torch

    return int(torch.get_num_threads())


def _created_time() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` (seconds) for a reproducible manifest."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch and not epoch.isdigit():
        raise DiscourseError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not '{epoch}'")
    seconds = int(epoch) if epoch else int(datetime.now(timezone.utc).timestamp())
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def _check_folds(folds: np.ndarray, Y: np.ndarray, codes: list[str], groups: Sequence | None) -> None:
    """Every fold must train on examples with and without each code; say which code and held-out groups if not."""
    for f in np.unique(folds):
        train = folds != f
        for j, code in enumerate(codes):
            if 0 < Y[train, j].sum() < train.sum():
                continue
            held = sorted({str(g) for g, fo in zip(groups, folds) if fo == f}) if groups is not None else []
            where = f" when {', '.join(held[:5])} {'is' if len(held) == 1 else 'are'} held out" if held else ""
            kind = "coded" if Y[train, j].sum() == 0 else "not coded"
            advice = ("its examples sit in too few groups; spread them over more, or group by another column "
                      "(--group-by)" if groups is not None else "code more excerpts, with and without it")
            raise DiscourseError(f"a cross-validation fold would have no excerpt {kind} '{code}' to train on{where}: {advice}")


def adapt_priors(P: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """EM prior correction (Saerens et al. 2002), per code, to a new corpus's prevalence.

    Returns the adjusted probabilities and the estimated prevalence of each code.
    """
    P = np.clip(np.asarray(P, float), 1e-6, 1 - 1e-6)
    pi0 = np.clip(np.asarray(train_prior, float), 1e-6, 1 - 1e-6)
    pi = P.mean(axis=0)
    for _ in range(max_iter):
        num = P * (pi / pi0)
        den = num + (1 - P) * ((1 - pi) / (1 - pi0))
        Q = num / den
        new = Q.mean(axis=0)
        if np.max(np.abs(new - pi)) < tol:
            pi = new
            break
        pi = new
    num = P * (pi / pi0)
    Q = num / (num + (1 - P) * ((1 - pi) / (1 - pi0)))
    return Q, pi
