"""Scale-out: work ``classify``'s chunks of documents on a Dask distributed cluster.

The client reads the transcripts and writes every output; workers only
segment, embed and predict. Each worker receives the model folder's files once
(a worker plugin), loads the model and spaCy once, and then works the chunks
of turns it is sent. Workers need the same ``discourse`` environment (the
package, its spaCy pipeline and encoder packages) but no shared file system;
their embedding caches are their own (``$DISCOURSE_CACHE`` on each worker).

    >>> run = map_on_cluster("tcp://10.0.0.5:8786", "models/default")
    >>> pred, stats = classify_study(study, model, key, loader, work, map_chunks=run)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from .embed import DEFAULT_BACKEND
from .errors import DiscourseError
from .pipeline import SegmentSettings, classify_turns, isolating, model_fingerprint

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a declared dependency
    raise DiscourseError("--scheduler needs Dask distributed: pip install 'dask[distributed]'") from None

PLUGIN_NAME = "discourse-model"  # each plugin's name is this, a dash and its key


def plugin_key(model_key: str, settings: SegmentSettings, backend: str) -> str:
    """What a worker must hold to work a run's chunks: the model, the segment settings and the encoder backend."""
    blob = json.dumps([model_key, settings.__dict__, backend], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ModelOnWorker(WorkerPlugin):
    """Carries a model folder's files; on each worker, loads the model and spaCy once.

    Named by model, settings and backend, so runs with different ones on one cluster each keep their own
    plugin (a worker keeps every plugin it was given until it restarts). Idempotent: a run with the same ones
    reuses the loaded plugin rather than replacing it under another run's chunks.
    """

    idempotent = True

    def __init__(self, model_dir: str | Path, settings: SegmentSettings, backend: str = DEFAULT_BACKEND):
        folder = Path(model_dir)
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.key = plugin_key(model_fingerprint(folder), settings, backend)
        self.name = f"{PLUGIN_NAME}-{self.key}"
        self.settings, self.backend = settings, backend
        self.model = self.nlp = self.folder = None

    def setup(self, worker=None):
        from .model import DiscourseClassifier
        from .segment import load_pipeline

        self.folder = tempfile.mkdtemp(prefix="discourse-model-")
        for name, data in self.files.items():
            (Path(self.folder) / name).write_bytes(data)
        self.model = DiscourseClassifier.load(self.folder, backend=self.backend)
        self.nlp = load_pipeline(self.settings.method)

    def teardown(self, worker=None):
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def work_chunk(turns: pd.DataFrame, key: str) -> tuple[pd.DataFrame | None, dict, list]:
    """Run on a worker: segment, embed and predict one chunk with the worker's loaded model."""
    from distributed import get_worker

    plugin = get_worker().plugins.get(f"{PLUGIN_NAME}-{key}")
    if plugin is None:
        raise RuntimeError("this worker does not hold this run's model; restart the workers")
    return isolating(lambda t: classify_turns(t, plugin.model, plugin.nlp, plugin.settings), turns)


def map_on_cluster(address: str, model_dir: str | Path, settings: SegmentSettings | None = None,
                   backend: str = DEFAULT_BACKEND, timeout: str = "20s") -> Callable:
    """A ``map_chunks`` for :func:`discourse.pipeline.classify_study` that sends chunks to a Dask scheduler.

    Results are yielded as chunks finish (so each is saved at once); the chunks,
    and so the results, are the same as an in-process run's.
    """
    plugin = ModelOnWorker(model_dir, settings or SegmentSettings(), backend)
    key = plugin.key

    def run(chunks: list[pd.DataFrame]) -> Iterator[tuple[int, pd.DataFrame | None, dict, list]]:
        from distributed import as_completed

        client = _connect(address, timeout)
        with client:
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=timeout)
                except (OSError, TimeoutError):  # WorkerStartTimeoutError is both
                    raise DiscourseError(f"the Dask scheduler has no workers (none joined within {timeout}): "
                                         f"start some with `dask worker {address}`", address) from None
            client.register_plugin(plugin)
            futures = {client.submit(work_chunk, turns, key, pure=False): i for i, turns in enumerate(chunks)}
            for fut in as_completed(futures):
                yield (futures[fut], *fut.result())

    return run


def _connect(address: str, timeout: str):
    """A Dask client of the scheduler at ``address``, or a one-line error saying what to do."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except ValueError as exc:  # no port, an unknown scheme: the address itself is wrong
        raise DiscourseError(f"not a Dask scheduler address ({exc}): give it as tcp://HOST:PORT, "
                             "e.g. tcp://10.0.0.5:8786", address) from None
    except (OSError, TimeoutError) as exc:
        raise DiscourseError(f"cannot reach the Dask scheduler ({type(exc).__name__}: {exc}): check that it runs "
                             "and that this machine can reach it", address) from None
