"""The ``onnx-int8`` encoder backend: export a sentence-transformers encoder to ONNX, quantize, run.

The transformer of a sentence-transformers folder is exported once with
``torch.onnx.export`` (the TorchScript exporter, inputs ``input_ids`` and
``attention_mask`` with dynamic batch and sequence axes), its weights are
quantized to int8 per output channel by ONNX Runtime's dynamic quantization
with 7-bit weights (``reduce_range``: on x86 processors without VNNI
instructions, 8-bit weights overflow the int16 sums of ONNX Runtime's int8
kernels and the vectors come out as noise), checked against the float export
on fixed probe sentences, and stored under
``<cache>/encoders/<encoder id>-onnx-int8-v2/`` (written to a temporary folder
and renamed, so a second process never sees a half-built model). ``RECIPE``
names the way the model is built: it is part of every name that keeps
results of this backend (model folder, embedding cache, finished documents),
so nothing computed by an older recipe is reused. Running it needs only onnxruntime and the folder's fast
tokenizer: mean pooling over the tokens and L2 normalisation follow, as in
sentence-transformers. An encoder with any other module (``modules.json``: a
Dense layer, another pooling) is refused rather than run without it.

Each text is run on its own (batch of one, no padding). Dynamic quantization
scales the activations of each matrix product by the range of the whole
input tensor, so in a padded batch a text's vector would depend on the other
texts of its batch (and on the padding); one text per run makes every
vector a function of its text alone, and is also faster here than padded
batches of 16 (no padding is computed; see docs/backends.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .encoders import _private_dir, max_positions, module_kind, quiet_transformers, read_modules, remove_stale_temporaries
from .errors import DiscourseError
from .tables import sha256_file

BACKEND = "onnx-int8"
MODEL_FILE = "model.onnx"
INFO_FILE = "onnx-int8.json"
FORMAT = "discourse-onnx-int8/2"
RECIPE = "v2"  # bump when the int8 model's numbers change; "v1" quantized 8-bit weights
PROBE_MIN_COSINE = 0.8  # the int8 vectors' mean cosine with the float export's, on PROBE_TEXTS, at least
PROBE_TEXTS = (
    "We listen to people who use our services and change things because of what they tell us.",
    "The survey came back and satisfaction with the ward was up on last year.",
    "Service users sit on the board with the commissioners, the GPs and the voluntary sector.",
    "People have a right to a say in decisions about their own care, and that means power moving.",
    "Getting involved gave me my confidence back after a long time in hospital.",
    "She knows things about living with voices that no textbook taught me.",
    "Patients have a responsibility to look after their own health and use services wisely.",
    "The minutes go to the governance committee every month.",
    "If you had a bad meal in a restaurant you would not go back, and it is the same here.",
    "Carers, staff and users worked on the new strategy together as partners.",
    "Nobody asked the people in the hostels what they needed; housing and money came first for them.",
    "Um, I mean, it was fine, you know, the room was booked and we had tea.",
)
OPSET = 17
INSTALL_HINT = "pip install onnxruntime onnx (the onnx-int8 encoder backend needs both)"


def require_onnxruntime() -> None:
    """Raise a one-line DiscourseError if onnxruntime or onnx cannot be imported."""
    missing = [m for m in ("onnxruntime", "onnx") if _find_spec(m) is None]
    if missing:
        raise DiscourseError(f"{' and '.join(missing)} is not installed: {INSTALL_HINT}")


def _find_spec(name: str):
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def model_dir(cache_dir: str | os.PathLike, encoder_id: str) -> Path:
    """Where the int8 model of an encoder is kept: ``<cache>/encoders/<encoder id>-onnx-int8-v2``."""
    return Path(cache_dir) / "encoders" / f"{encoder_id}-{BACKEND}-{RECIPE}"


def _remove_v1(cache_dir: str | os.PathLike, encoder_id: str) -> None:
    """Delete what the first recipe left for an encoder (its int8 model and its vectors), if anything."""
    shutil.rmtree(Path(cache_dir) / "encoders" / f"{encoder_id}-{BACKEND}", ignore_errors=True)
    try:
        (Path(cache_dir) / f"embeddings-{encoder_id}-{BACKEND}.sqlite").unlink(missing_ok=True)
    except OSError:
        pass


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def export_float(st_folder: Path, out_path: Path, adapter=None) -> None:
    """Export the transformer of a sentence-transformers folder (with a tuned ``adapter`` merged) to a float ONNX file."""
    import warnings

    quiet_transformers()
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_folder), device="cpu")
    auto = st[0].auto_model.eval()
    if adapter is not None:
        from .tune import merge_adapter

        merge_adapter(auto, adapter)

    class LastHidden(torch.nn.Module):
        """(input_ids, attention_mask) -> token embeddings, called by keyword."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Trace with padding in the batch, so the attention mask is a real input of the graph
    # (an all-ones mask lets the model drop it while tracing).
    sample = st.tokenizer(["An example sentence to trace the encoder with.", "Short."], padding=True,
                          return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(auto), (sample["input_ids"], sample["attention_mask"]), str(out_path),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
        )


def quantize(float_path: Path, out_path: Path, keep_float: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization of the weights, per output channel, 7-bit (nodes named in ``keep_float`` stay float)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "consider pre-processing" advice on the root logger
    try:
        quantize_dynamic(str(float_path), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                         reduce_range=True, nodes_to_exclude=list(keep_float))
    finally:
        logging.disable(previous)


def build(st_folder: Path, encoder_id: str, cache_dir: str | os.PathLike, adapter=None) -> Path:
    """The int8 model folder of an encoder, exported and quantized the first time; returns the folder."""
    import time

    require_onnxruntime()
    target = model_dir(cache_dir, encoder_id)
    if (target / INFO_FILE).is_file():
        return target
    check_modules(st_folder)
    _private_dir(target.parent)
    remove_stale_temporaries(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        t0 = time.perf_counter()
        try:
            export_float(st_folder, tmp / "float.onnx", adapter)
            quantize(tmp / "float.onnx", tmp / MODEL_FILE)
        except DiscourseError:
            raise
        except Exception as exc:  # noqa: BLE001 - any exporter failure is one line for the user
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DiscourseError(f"cannot export the encoder to ONNX ({type(exc).__name__}: {msg})", st_folder) from None
        info = {
            "format": FORMAT,
            "recipe": RECIPE,
            "encoder_id": encoder_id,
            "source": str(st_folder),
            "opset": OPSET,
            "quantization": {"method": "quantize_dynamic", "per_channel": True, "weight_type": "QInt8",
                             "reduce_range": True},
            "versions": _versions(),
            "sha256": {MODEL_FILE: sha256_file(tmp / MODEL_FILE)},
        }
        _write_info(tmp, info)
        float_dir = tmp / "float"
        float_dir.mkdir()
        os.replace(tmp / "float.onnx", float_dir / MODEL_FILE)
        _write_info(float_dir, {"sha256": {MODEL_FILE: sha256_file(float_dir / MODEL_FILE)}})
        agreement = probe_agreement(tmp, float_dir, st_folder)
        if agreement["mean"] < PROBE_MIN_COSINE:
            raise DiscourseError(
                f"the int8 model does not reproduce the encoder on this processor (mean cosine {agreement['mean']:.2f} "
                f"with the float model on {len(PROBE_TEXTS)} probe sentences, {PROBE_MIN_COSINE} needed): "
                "use --encoder-backend torch", st_folder)
        shutil.rmtree(float_dir)
        info["probe_cosine_with_float"] = agreement
        info["seconds"] = round(time.perf_counter() - t0, 1)
        _write_info(tmp, info)
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, target)
        except OSError as exc:  # another process finished first: keep its copy
            if not (target / INFO_FILE).is_file():
                raise DiscourseError(f"cannot store the onnx-int8 model ({exc.strerror}): delete {target} and retry",
                                     target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_v1(cache_dir, encoder_id)
    return target


def _write_info(folder: Path, info: dict) -> None:
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def probe_agreement(int8_folder: Path, float_folder: Path, st_folder: Path) -> dict:
    """Mean and lowest cosine between the int8 and the float model's vectors of ``PROBE_TEXTS``."""
    a = OnnxEncoder(int8_folder, st_folder).encode(PROBE_TEXTS)
    b = OnnxEncoder(float_folder, st_folder).encode(PROBE_TEXTS)
    cos = (a * b).sum(axis=1)
    return {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}


def read_info(folder: Path) -> dict:
    """The build record of an int8 model folder, with model.onnx checked against its sha256."""
    hint = f"delete {folder} to rebuild it"
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        expected = info["sha256"][MODEL_FILE]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DiscourseError(f"the onnx-int8 model record {INFO_FILE} is missing or damaged ({type(exc).__name__}): {hint}",
                             folder) from None
    path = folder / MODEL_FILE
    if not path.is_file() or sha256_file(path) != expected:
        raise DiscourseError(f"{MODEL_FILE} is missing or does not match its sha256 (damaged): {hint}", folder)
    return info


def _sentence_config(st_folder: Path) -> tuple[int, bool]:
    """(max_seq_length, do_lower_case) of a sentence-transformers folder.

    The length is sentence_bert_config.json's ``max_seq_length``, else the tokenizer's ``model_max_length``
    (512 if neither says), never more than the transformer's position table holds (``encoders.max_positions``).
    """
    cfg_path = st_folder / "sentence_bert_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    max_len = cfg.get("max_seq_length")
    if not max_len:
        tok_cfg = st_folder / "tokenizer_config.json"
        max_len = json.loads(tok_cfg.read_text(encoding="utf-8")).get("model_max_length", 512) if tok_cfg.is_file() else 512
    limit = max_positions(st_folder) or 512
    return int(min(int(max_len), limit)), bool(cfg.get("do_lower_case", False))


SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


def check_modules(st_folder: Path) -> None:
    """Refuse an encoder the int8 runner would not reproduce: only Transformer, mean Pooling and Normalize.

    The runner computes the transformer's token states, their mean over the text and the L2 norm; any
    other module (Dense, a second pooling...) would be silently left out.
    """
    modules = read_modules(st_folder)
    if modules is None:
        return  # a plain transformers folder: sentence-transformers adds mean pooling
    kinds = [module_kind(m) for m in modules]
    other = [k or "?" for k in kinds if k not in SUPPORTED_MODULES]
    if other or kinds[:1] != ["Transformer"] or kinds.count("Transformer") != 1 or kinds.count("Pooling") > 1:
        raise DiscourseError(f"the onnx-int8 backend runs Transformer, mean Pooling and Normalize modules only, this "
                             f"encoder has {', '.join(kinds) or 'none'}: use --encoder-backend torch", st_folder)
    for m in modules:
        if module_kind(m) == "Pooling":
            _check_mean_pooling(st_folder / str(m.get("path", "")) / "config.json")


def _check_mean_pooling(pool: Path) -> None:
    try:
        cfg = json.loads(pool.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DiscourseError(f"the pooling configuration cannot be read ({type(exc).__name__})", pool) from None
    modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v is True]
    if modes and modes != ["pooling_mode_mean_tokens"]:
        raise DiscourseError(f"the onnx-int8 backend supports mean pooling only, this encoder uses {', '.join(modes)}: "
                             "use --encoder-backend torch", pool)


def _pad_id(tok_file: Path) -> int:
    """The padding token id: from tokenizer.json's padding settings, else tokenizer_config's pad_token."""
    data = json.loads(tok_file.read_text(encoding="utf-8"))
    pad = data.get("padding") or {}
    if "pad_id" in pad:
        return int(pad["pad_id"])
    cfg = tok_file.parent / "tokenizer_config.json"
    token = json.loads(cfg.read_text(encoding="utf-8")).get("pad_token") if cfg.is_file() else None
    vocab = (data.get("model") or {}).get("vocab") or {}
    return int(vocab.get(token, 0)) if isinstance(vocab, dict) else 0


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """Runs an int8 model folder: tokenizer -> ONNX Runtime -> mean pooling -> L2 norm.

    >>> runner = OnnxEncoder(build(folder, encoder_id, cache), folder)
    >>> runner.encode(["We listen to people."]).shape
    (1, 384)
    """

    def __init__(self, onnx_folder: Path, st_folder: Path, threads: int | None = None):
        require_onnxruntime()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.onnx_folder = onnx_folder
        self.info = read_info(onnx_folder)
        check_modules(st_folder)
        tok_file = st_folder / "tokenizer.json"
        if not tok_file.is_file():
            raise DiscourseError("the onnx-int8 backend needs the encoder's fast tokenizer (tokenizer.json)", st_folder)
        self.max_seq_length, self.lower = _sentence_config(st_folder)
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.pad_id = _pad_id(tok_file)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_count()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.use_deterministic_compute = True
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a model file onnxruntime cannot read
            raise DiscourseError(f"onnxruntime cannot load {MODEL_FILE} ({type(exc).__name__}): delete {onnx_folder} to rebuild it",
                                 onnx_folder) from None
        self.dim = int(self._run("dimension probe").shape[0])

    def _tokens(self, text: str) -> list[int]:
        text = str(text).strip()
        return self.tokenizer.encode(text.lower() if self.lower else text).ids

    def _run(self, text: str) -> np.ndarray:
        """The mean-pooled, L2-normalised vector of one text (float32)."""
        return self._run_batch([self._tokens(text)])[0]

    def _run_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        """Pad a batch on the right, run it, mean-pool over the attention mask, L2-normalise."""
        width = max(len(t) for t in token_ids)
        ids = np.full((len(token_ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for i, t in enumerate(token_ids):
            ids[i, :len(t)] = t
            mask[i, :len(t)] = 1
        try:
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are long and internal
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise DiscourseError(f"onnxruntime failed on a text of {width} tokens ({type(exc).__name__}: {msg}): "
                                 "use --encoder-backend torch", self.onnx_folder) from None
        m = mask[..., None].astype(np.float32)
        vecs = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 1, progress: bool = False) -> np.ndarray:
        """One row per text, in the order given, float32, unit length.

        ``batch_size`` 1 (the default) runs each text alone, so its vector does not
        depend on the other texts; larger batches are formed from texts sorted by
        length, as sentence-transformers does (kept for measurement). ``progress``
        shows a bar on stderr.
        """
        from tqdm import tqdm

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = [self._tokens(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-len(tokens[i]), i))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="encoding", unit="text", leave=False, disable=not progress) as bar:
            for start in range(0, len(order), max(1, batch_size)):
                idx = order[start:start + max(1, batch_size)]
                out[idx] = self._run_batch([tokens[i] for i in idx])
                bar.update(len(idx))
        return out
