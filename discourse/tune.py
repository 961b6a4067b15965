"""Tune the top layers of a sentence encoder on coded excerpts.

The lower layers stay frozen, so their hidden states are computed once per
text and reused by every epoch and every cross-validation fold. The top
``layers`` transformer layers are trained together with a linear multi-label
head by binary cross-entropy: either their full weights (``rank=0``, the
default of ``ModelConfig``) or low-rank adapters on each of their linear maps
(LoRA, ``W + scale * B @ A``). The head is then dropped: the
tuned encoder's mean-pooled, L2-normalised embeddings feed the classifier's
logistic regressions exactly as frozen embeddings do. Only an encoder whose own
embedding is just that (Transformer, mean Pooling, perhaps Normalize) can be
tuned, and ``Tuner`` checks on two short fixed sentences that its features
are the encoder's own. Fully tuned weight
matrices are stored as their change from the base weights truncated to
``delta_rank`` by SVD (float16 factors ``B @ A``; other parameters as float16
values), so a tuned model is a few MB, not tens; the classifier is fitted on
embeddings from these stored values, so the saved encoder is the evaluated one. The result (an
``Adapter``) is saved as a safetensors file beside the model; merged into the
weights (``merge_adapter``) it makes an ordinary sentence-transformers model,
so every backend runs it.

>>> tuner = Tuner(encoder.model, TuneConfig(layers=4))
>>> H = tuner.hidden_states(texts)           # frozen part, once
>>> adapter = tuner.fit(H, Y)                # Y: excerpts x codes, 0/1
>>> X = tuner.embed(adapter, H)              # what the tuned encoder gives
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np

from .errors import DiscourseError
from .sentences import max_pool, sentence_index

ADAPTER_FILE = "encoder-adapter.safetensors"
SCALE_KEY = "lora_scale"
FULL = ".full"  # suffix of a full replacement weight in the adapter file


@dataclass(frozen=True)
class TuneConfig:
    """How the encoder is tuned (chosen by measurement: docs/model-selection.md)."""

    layers: int = 4
    rank: int = 8  # 0: tune the layers' full weights instead of low-rank adapters
    delta_rank: int = 64  # full weights: rank of each matrix's stored change (SVD); 0 stores whole matrices
    epochs: int = 3
    lr: float | None = None  # None: 5e-4 for adapters, 4e-5 for full weights
    head_lr: float = 2e-3
    batch_size: int = 16
    seed: int = 0

    @property
    def scale(self) -> float:
        return 2.0  # LoRA alpha / rank with alpha = 2 * rank

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.rank else 4e-5)


@dataclass(frozen=True)
class Adapter:
    """Tuned top layers: low-rank updates ``{module path: (A, B)}`` added as ``scale * B @ A``,
    and/or replacement values ``{parameter path: float16 array}``."""

    factors: dict[str, tuple[np.ndarray, np.ndarray]]
    scale: float
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)  # the file it was read from, for error messages

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        arrays = {SCALE_KEY: np.array([self.scale], dtype=np.float32)}  # no metadata: its key order varies
        for name, (a, b) in sorted(self.factors.items()):
            arrays[f"{name}.A"], arrays[f"{name}.B"] = a, b
        arrays.update({f"{name}{FULL}": w for name, w in self.weights.items()})
        # safetensors writes an array's memory as it lies: a column-major one would be read back transposed
        return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})

    @classmethod
    def from_bytes(cls, data: bytes, source=None) -> "Adapter":
        from safetensors.numpy import load

        try:
            arrays = load(data)
            scale = float(arrays.pop(SCALE_KEY)[0])
        except Exception as exc:  # noqa: BLE001 - any damage is one line for the user
            raise DiscourseError(f"not a readable encoder adapter ({type(exc).__name__})", source) from None
        weights = {k[: -len(FULL)]: v for k, v in arrays.items() if k.endswith(FULL)}
        names = sorted({k.rsplit(".", 1)[0] for k in arrays if not k.endswith(FULL)})
        try:
            factors = {n: (arrays[f"{n}.A"], arrays[f"{n}.B"]) for n in names}
        except KeyError as exc:
            raise DiscourseError(f"encoder adapter lacks {exc.args[0]}", source) from None
        return cls(factors, scale, weights, None if source is None else str(source))

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def merge_adapter(auto_model, adapter: Adapter) -> None:
    """Set each full weight, then add each ``scale * B @ A`` to its linear map's weight, in place.

    Every entry is checked against ``auto_model`` first, so an adapter that does not fit changes nothing
    and ends in one line naming its file.
    """
    import torch

    params = {name: _fitting_parameter(auto_model, name, w, adapter.source) for name, w in adapter.weights.items()}
    linears = {name: _fitting_linear(auto_model, name, a, b, adapter.source) for name, (a, b) in adapter.factors.items()}
    with torch.no_grad():
        for name, w in adapter.weights.items():
            params[name].copy_(torch.from_numpy(w.astype(np.float32)))
        for name, (a, b) in adapter.factors.items():
            delta = torch.from_numpy(b.astype(np.float32)) @ torch.from_numpy(a.astype(np.float32)) * adapter.scale
            linears[name].weight += delta.to(linears[name].weight.dtype)


def _misfit(what: str, source) -> DiscourseError:
    return DiscourseError(f"the encoder adapter does not fit this encoder ({what})", source)


def _fitting_parameter(auto_model, name: str, w: np.ndarray, source):
    """The parameter ``name`` replaced by ``w``, if it exists with ``w``'s shape."""
    try:
        param = auto_model.get_parameter(name)
    except AttributeError:
        raise _misfit(f"no parameter {name}", source) from None
    if tuple(w.shape) != tuple(param.shape):
        raise _misfit(f"{name} is {tuple(param.shape)}, the adapter's {tuple(w.shape)}", source)
    return param


def _fitting_linear(auto_model, name: str, a: np.ndarray, b: np.ndarray, source):
    """The linear map ``name`` that ``B @ A`` changes, if it is one and the factors' shapes fit it."""
    import torch

    try:
        linear = auto_model.get_submodule(name)
    except AttributeError:
        raise _misfit(f"no module {name}", source) from None
    if not isinstance(linear, torch.nn.Linear):
        raise _misfit(f"{name} is a {type(linear).__name__}, not a linear map", source)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise _misfit(f"{name}: factors A {a.shape} and B {b.shape} do not multiply", source)
    if (b.shape[0], a.shape[1]) != tuple(linear.weight.shape):
        raise _misfit(f"{name} is {tuple(linear.weight.shape)}, the adapter's {(b.shape[0], a.shape[1])}", source)
    return linear


def _lora_class():
    import torch

    class LoRALinear(torch.nn.Module):
        """A frozen linear map plus a trainable low-rank update."""

        def __init__(self, base, rank: int, scale: float, generator):
            super().__init__()
            self.base, self.scale = base, scale
            for p in base.parameters():
                p.requires_grad_(False)
            self.A = torch.nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features))
            self.B = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

    return LoRALinear


class _Reached(Exception):
    """Raised by a forward hook to end a forward pass early, carrying the hooked module's output."""

    def __init__(self, output):
        super().__init__()
        self.output = output


def _stop_with_output(module, inputs, output):
    raise _Reached(output[0] if isinstance(output, tuple) else output)


PROBES = ("We sat on the board.", "It meant power, for once, and nobody could take it away from us.")
PROBE_TOLERANCE = 1e-4  # largest difference allowed between the tuner's and the encoder's own embedding


def _pooling_mode(pooling) -> str:
    """``"mean"``, ``"cls"``, ``"cls+mean"``...: a Pooling module's mode, in sentence-transformers 5 or 6."""
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):
        mode = pooling.get_pooling_mode_str()
    return "+".join(mode) if isinstance(mode, (list, tuple)) else str(mode)


def _check_modules(st_model) -> str:
    """The encoder's folder, if its embedding is its transformer's mean-pooled tokens (perhaps L2-normalised).

    The tuner computes exactly that; any other pooling or a later module (Dense...) would train the
    classifier on features the saved model never computes.
    """
    auto = getattr(st_model[0], "auto_model", None) if len(st_model) else None
    folder = str(getattr(auto, "name_or_path", "") or "the encoder")
    names = [type(m).__name__ for m in st_model]
    mode = _pooling_mode(st_model[1]) if names[1:2] == ["Pooling"] else ""
    if auto is None or names[:2] != ["Transformer", "Pooling"] or mode != "mean" or names[2:] not in ([], ["Normalize"]):
        shown = ", ".join(f"{n} ({mode})" if n == "Pooling" else n for n in names)
        raise DiscourseError(f"encoder tuning needs Transformer, Pooling (mean) and perhaps Normalize; this encoder has "
                             f"{shown}: train with --tune-layers 0", folder)
    return folder


class Tuner:
    """Tunes the top ``config.layers`` layers of one sentence-transformers model (BERT- or MPNet-style)."""

    def __init__(self, st_model, config: TuneConfig | None = None):
        self.config = config or TuneConfig()
        self.st = st_model
        self.folder = _check_modules(st_model)
        self.auto = st_model[0].auto_model.eval()
        layers = getattr(getattr(self.auto, "encoder", None), "layer", None)
        if layers is None:
            raise DiscourseError("encoder tuning needs a BERT- or MPNet-style transformer (encoder.layer)", self.folder)
        if not 1 <= self.config.layers <= len(layers):
            raise DiscourseError(f"--tune-layers must be between 1 and {len(layers)} for this encoder")
        self.first = len(layers) - self.config.layers
        self.max_length = int(getattr(st_model, "max_seq_length", 256) or 256)
        self._check_probes()

    def _check_probes(self) -> None:
        """Refuse to tune if the tuner's features of a few fixed sentences are not what the encoder computes."""
        try:
            mine = self.embed(None, self.hidden_states(PROBES))
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:  # layers called another way
            raise DiscourseError(f"encoder tuning cannot run this encoder's layers ({type(exc).__name__}; "
                                 "another transformers version?): train with --tune-layers 0", self.folder) from None
        theirs = self.st.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        gap = float(np.abs(mine - np.asarray(theirs, dtype=np.float32)).max())
        if not gap <= PROBE_TOLERANCE:  # NaN too
            raise DiscourseError(f"encoder tuning does not reproduce this encoder's embeddings (they differ by {gap:.1e}; "
                                 "another transformers version?): train with --tune-layers 0", self.folder)

    # --- frozen part ------------------------------------------------------------

    def hidden_states(self, texts: Sequence[str], batch_size: int = 16) -> list:
        """Hidden states entering the first tuned layer, one (tokens x dim) tensor per text."""
        import torch

        out: list = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        # the layers above the frozen ones need not run: stop the forward pass where their input is made
        last = self.auto.encoder.layer[self.first - 1] if self.first else self.auto.embeddings
        handle = last.register_forward_hook(_stop_with_output)
        try:
            with torch.no_grad():
                for s in range(0, len(texts), batch_size):
                    idx = order[s:s + batch_size]
                    enc = self.st.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                            max_length=self.max_length, return_tensors="pt")
                    try:
                        self.auto(**enc)
                    except _Reached as reached:
                        hs = reached.output
                    else:
                        raise DiscourseError("the encoder's forward pass never reached the layers to tune")
                    for r, i in enumerate(idx):
                        out[i] = hs[r, : int(enc["attention_mask"][r].sum())].clone()
        finally:
            handle.remove()
        return out

    # --- tuned part -------------------------------------------------------------

    def _top(self, generator):
        import torch

        LoRALinear = _lora_class()
        top = torch.nn.ModuleList(copy.deepcopy(list(self.auto.encoder.layer[self.first:])))
        if not self.config.rank:
            return top  # full weights: every parameter of the top layers is trained
        for p in top.parameters():
            p.requires_grad_(False)
        for k, layer in enumerate(top):
            for name, module in list(layer.named_modules()):
                for child, sub in list(module.named_children()):
                    if isinstance(sub, torch.nn.Linear):
                        setattr(module, child, LoRALinear(sub, self.config.rank, self.config.scale, generator))
        return top

    def _pooled(self, top, hs, mask):
        add = (1.0 - mask[:, None, None, :].to(hs.dtype)) * -1e4
        bias = self.auto.encoder.compute_position_bias(hs) if hasattr(self.auto.encoder, "compute_position_bias") else None
        for layer in top:
            out = layer(hs, add, bias) if bias is not None else layer(hs, add)
            hs = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).to(hs.dtype)
        return (hs * m).sum(1) / m.sum(1)

    @staticmethod
    def _batch(H, ids):
        import torch

        n = max(H[i].shape[0] for i in ids)
        hs = torch.zeros(len(ids), n, H[ids[0]].shape[1])
        mask = torch.zeros(len(ids), n)
        for r, i in enumerate(ids):
            k = H[i].shape[0]
            hs[r, :k], mask[r, :k] = H[i], 1.0
        return hs, mask

    def _batches(self, H, rng) -> list[np.ndarray]:
        """Shuffled batches of similar length (sorted inside runs of 8 batches), to spare padding."""
        bs = self.config.batch_size
        perm = rng.permutation(len(H))
        lens = np.array([H[i].shape[0] for i in perm])
        out = []
        for c in range(0, len(perm), bs * 8):
            run = perm[c:c + bs * 8][np.argsort(lens[c:c + bs * 8], kind="stable")]
            out += [run[s:s + bs] for s in range(0, len(run), bs)]
        return [out[k] for k in rng.permutation(len(out))]

    def fit(self, H: list, Y: np.ndarray, progress=None) -> Adapter:
        """Train adapters and a multi-label head on (hidden states, 0/1 labels); return the adapters."""
        import torch

        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            gen = torch.Generator().manual_seed(cfg.seed)
            top = self._top(gen)
            head = torch.nn.Linear(H[0].shape[1], Y.shape[1])
            drop = torch.nn.Dropout(0.1)
            opt = torch.optim.AdamW([{"params": [p for p in top.parameters() if p.requires_grad], "lr": cfg.learning_rate},
                                     {"params": head.parameters(), "lr": cfg.head_lr}], weight_decay=0.01)
            steps = cfg.epochs * math.ceil(len(H) / cfg.batch_size)
            warm = max(1, steps // 10)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
            target = torch.tensor(np.asarray(Y), dtype=torch.float32)
            rng = np.random.default_rng(cfg.seed)
            top.train()
            for _ in range(cfg.epochs):
                for ids in self._batches(H, rng):
                    hs, mask = self._batch(H, ids)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        head(drop(self._pooled(top, hs, mask))), target[ids])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    if progress is not None:
                        progress(len(ids))
        if not cfg.rank:  # embed() and the encoder both use the stored (compressed) values
            return self._stored(top)
        factors = {}
        for k, layer in enumerate(top):
            for name, module in layer.named_modules():
                if hasattr(module, "A") and hasattr(module, "B"):
                    factors[f"encoder.layer.{self.first + k}.{name}"] = (module.A.detach().numpy().copy(),
                                                                         module.B.detach().numpy().copy())
        return Adapter(factors, cfg.scale)

    def _stored(self, top) -> Adapter:
        """Fully tuned layers as stored: each matrix's change from the base at ``delta_rank``, the rest as values."""
        import torch

        r, factors, weights = self.config.delta_rank, {}, {}
        for k, layer in enumerate(top):
            base = self.auto.encoder.layer[self.first + k]
            for name, p in layer.named_parameters():
                path = f"encoder.layer.{self.first + k}.{name}"
                if p.ndim != 2 or not name.endswith(".weight") or not r or r * sum(p.shape) >= p.numel():
                    weights[path] = p.detach().numpy().astype(np.float16)
                    continue
                delta = p.detach() - base.get_parameter(name).detach()
                U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
                a = np.ascontiguousarray((S[:r, None] * Vh[:r]).numpy(), dtype=np.float16)
                b = np.ascontiguousarray(U[:, :r].numpy(), dtype=np.float16)
                factors[path.removesuffix(".weight")] = (a, b)
        return Adapter(factors, 1.0, weights)

    def _local(self, by_path: dict) -> dict:
        """``encoder.layer.<i>.rest`` -> ``<i - first>.rest``: paths inside the copied top layers."""
        offset, out = len("encoder.layer."), {}
        for name, value in by_path.items():
            k, rest = name[offset:].split(".", 1)
            out[f"{int(k) - self.first}.{rest}"] = value
        return out

    def embed(self, adapter: Adapter | None, H: list, batch_size: int = 32) -> np.ndarray:
        """The (tuned) encoder's L2-normalised embeddings, from cached hidden states."""
        import torch

        layers = list(self.auto.encoder.layer[self.first:])
        top = torch.nn.ModuleList(layers if adapter is None else copy.deepcopy(layers)).eval()  # merged into a copy
        if adapter is not None:
            merge_adapter(top, Adapter(self._local(adapter.factors), adapter.scale, self._local(adapter.weights),
                                       adapter.source))
        out = np.zeros((len(H), H[0].shape[1]), dtype=np.float32)
        order = np.argsort([h.shape[0] for h in H], kind="stable")
        with torch.no_grad():
            for s in range(0, len(H), batch_size):
                ids = order[s:s + batch_size]
                hs, mask = self._batch(H, ids)
                v = self._pooled(top, hs, mask)
                out[ids] = torch.nn.functional.normalize(v, dim=1).numpy()
        return out


class TunedStates:
    """The frozen encoder layers' hidden states of the excerpts (and of their sentences), computed once.

    ``features(adapter, rows)`` gives the rows' embedding features from the
    encoder tuned with ``adapter``: what ``DiscourseClassifier.embed`` gives
    once the adapter is merged into the encoder.
    """

    def __init__(self, tuner: Tuner, texts: Sequence[str], sentence_max: bool):
        self.tuner = tuner
        sentences, index = sentence_index(texts) if sentence_max else ([], None)
        distinct = list(dict.fromkeys([*texts, *sentences]))  # a one-sentence excerpt is its own sentence: run once
        at = {t: k for k, t in enumerate(distinct)}
        self.states = tuner.hidden_states(distinct)
        self.text_at = [at[t] for t in texts]
        self.sentences_at = None if index is None else [[at[sentences[s]] for s in ix] for ix in index]
        self.H = [self.states[k] for k in self.text_at]

    def features(self, adapter: Adapter | None, rows: Sequence[int]) -> np.ndarray:
        own = [self.text_at[i] for i in rows]
        pieces = [] if self.sentences_at is None else [self.sentences_at[i] for i in rows]
        need = sorted({*own, *(k for ix in pieces for k in ix)})  # each distinct text through the top layers once
        at = {k: j for j, k in enumerate(need)}
        E = self.tuner.embed(adapter, [self.states[k] for k in need])
        X = E[[at[k] for k in own]]
        if self.sentences_at is None:
            return X
        return np.hstack([X, max_pool(E, [[at[k] for k in ix] for ix in pieces])])
