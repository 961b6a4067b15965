"""Scale-out on Dask: a LocalCluster of two worker processes gives the in-process results, byte for byte."""

import os

import pandas as pd
import pytest

import discourse.pipeline


@pytest.mark.slow
def test_cluster_run_is_identical_to_in_process_run(run_cli, demo_study, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    study = demo_study(["A01", "B08", "C06"])
    monkeypatch.setattr(discourse.pipeline, "CHUNK_DOCS", 1)  # three chunks, so both workers get work
    monkeypatch.setenv("DISCOURSE_CACHE", str(tmp_path / "cache-here"))
    args = ("classify", "--manifest", study / "manifest.csv")
    # Dask runs each worker's encoder on one thread (OMP_NUM_THREADS=1), and on some processors (AVX-512) the
    # thread count changes the last bits of the vectors, so the in-process run uses one thread too
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, out, err = run_cli(*args, "-o", tmp_path / "here")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    # the workers start with an empty embedding cache of their own: they really encode
    monkeypatch.setenv("DISCOURSE_CACHE", str(tmp_path / "cache-workers"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        code, out, err = run_cli(*args, "-o", tmp_path / "there", "--scheduler", cluster.scheduler_address)
        assert code == 0, err
        with distributed.Client(cluster) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2
            done = client.run(lambda dask_worker: sorted(dask_worker.plugins))
            assert all(any(n.startswith("discourse-model-") for n in names) for names in done.values())
            assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}
    assert "3 documents (0 reused)" in out
    assert os.listdir(tmp_path / "cache-workers"), "the workers did not encode anything"
    for name in ("predictions.csv", "excerpts.parquet", "turns.parquet"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name
    pred = pd.read_parquet(tmp_path / "there" / "predictions.parquet")
    assert set(pred.doc_id) == {"A01", "B08", "C06"}


def test_unreachable_scheduler_is_a_one_line_error(tmp_path):
    pytest.importorskip("distributed")
    from discourse.cluster import map_on_cluster
    from discourse.errors import DiscourseError

    run = map_on_cluster("tcp://127.0.0.1:9", "models/default", timeout="2s")
    with pytest.raises(DiscourseError, match="cannot reach the Dask scheduler"):
        list(run([pd.DataFrame()]))


def test_scheduler_address_without_port_is_a_one_line_error():
    pytest.importorskip("distributed")
    from discourse.cluster import map_on_cluster
    from discourse.errors import DiscourseError

    for address in ("10.0.0.5", "foo://10.0.0.5:8786"):
        run = map_on_cluster(address, "models/default", timeout="2s")
        with pytest.raises(DiscourseError, match="not a Dask scheduler address .*give it as tcp://HOST:PORT") as exc:
            list(run([pd.DataFrame()]))
        assert str(exc.value).startswith(f"{address}: ") and "\n" not in str(exc.value)


def test_scheduler_without_workers_is_a_one_line_error():
    distributed = pytest.importorskip("distributed")
    from discourse.cluster import map_on_cluster
    from discourse.errors import DiscourseError

    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None, silence_logs=40) as cluster:
        run = map_on_cluster(cluster.scheduler_address, "models/default", timeout="1s")
        with pytest.raises(DiscourseError, match="the Dask scheduler has no workers .*start some with `dask worker"):
            list(run([pd.DataFrame()]))


def test_runs_with_different_settings_keep_their_own_plugin_on_a_worker(monkeypatch):
    distributed = pytest.importorskip("distributed")
    import discourse.cluster as cluster
    from discourse.pipeline import SegmentSettings

    a = cluster.ModelOnWorker("models/default", SegmentSettings())
    b = cluster.ModelOnWorker("models/default", SegmentSettings(max_sentences=2))
    c = cluster.ModelOnWorker("models/default", SegmentSettings(), backend="onnx-int8")
    assert len({a.name, b.name, c.name}) == 3 and a.name.startswith("discourse-model-")
    assert cluster.ModelOnWorker("models/default", SegmentSettings()).name == a.name  # same run: same plugin
    worker = type("Worker", (), {"plugins": {p.name: p for p in (a, b, c)}})()  # both registered, neither replaced
    monkeypatch.setattr(distributed, "get_worker", lambda: worker)
    monkeypatch.setattr(cluster, "classify_turns", lambda t, model, nlp, settings: (settings, {}))
    assert cluster.work_chunk(pd.DataFrame(), b.key)[0] == SegmentSettings(max_sentences=2)
    assert cluster.work_chunk(pd.DataFrame(), a.key)[0] == SegmentSettings()
    with pytest.raises(RuntimeError, match="does not hold this run's model"):
        cluster.work_chunk(pd.DataFrame(), "0" * 16)
