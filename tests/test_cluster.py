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
            assert all("discourse-model" in names for names in done.values())
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
