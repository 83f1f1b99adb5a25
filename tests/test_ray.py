"""Bulk indexing on a local Ray cluster (`csrv2_vdb.ray_index`): the same rows, codes and resume as `bulk_index`.

The cluster is started by the tests (`ray.init` with 2 CPUs; `ray start` for two nodes on 127.0.0.1). Rows carry
precomputed 32-dim embeddings, so 20,000 of them cost the actors little; one test runs texts through the real
backbone in the actors. `make test` runs each test file in one pytest-xdist process (--dist loadfile), so no
other process uses Ray while the last tests here run `ray stop`, which ends every Ray process of the machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from csrv2_vdb.bulk import bulk_index, committed_batches
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.ray_index import RayOptions, StoreSpec, ray_bulk_index
from tests.engines import location, open_engine

pytest.importorskip("ray")

N, DIM, BATCH = 20_000, 32, 200


def _rows(path: Path, n: int = N) -> Path:
    """n + 10 records of n documents: id, a unit 32-dim embedding, a payload; the last 10 records repeat ids
    doc-10..19 (the last record wins)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n + 10, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with open(path, "w") as f:
        for i in range(n + 10):
            doc = f"doc-{i if i < n else i - n + 10}"
            f.write(json.dumps({"id": doc, "embedding": x[i].tolist(), "n": i, "tag": ["a", "b"][i % 2]}) + "\n")
    return path


def _records(path: Path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)


def _index_direct(store, records, encoder: CSRv2Encoder) -> None:
    """In-process bulk_index into "direct", torch on one thread as in a one-CPU actor (float sums depend on the
    thread count: codes are bit-exact between runs with the same count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bulk_index(store, "direct", records, encoder.encode_embeddings, batch_size=BATCH, vector_field="embedding",
                   progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _encoder() -> CSRv2Encoder:
    torch.manual_seed(3)
    return CSRv2Encoder(None, SparseHead(DIM, 128, k=8), k=8)


@pytest.fixture(scope="module")
def cluster():
    import ray

    for attempt in range(3):  # Ray's GCS may miss its start-up deadline on a busy 2-core machine: try again
        try:
            context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                               object_store_memory=256 * 2**20)  # fmt: skip
            break
        except RuntimeError:
            ray.shutdown()
            if attempt == 2:
                raise
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    return _rows(tmp_path_factory.mktemp("ray-rows") / "rows.jsonl")


def _same(store, a: str, b: str) -> None:
    """Collections `a` and `b` hold the same ids, payloads and codes, bit for bit."""
    ids = [f"doc-{i}" for i in range(N)]
    assert store.count(a) == store.count(b) == N
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        assert [h.payload for h in store.get(a, chunk)] == [h.payload for h in store.get(b, chunk)]
        left, right = store.codes(a, chunk), store.codes(b, chunk)
        np.testing.assert_array_equal(left.indices, right.indices)
        np.testing.assert_array_equal(left.values, right.values)
    assert store.get(b, ["doc-15"])[0].payload["n"] == N + 5  # the repeated id: its last record


@pytest.mark.parametrize("engine", ["qdrant-edge", "milvus-lite", "pgvector"])
def test_ray_writes_what_bulk_index_writes_row_for_row(cluster, rows, tmp_path, engine):
    """Embedded engines through the driver, the PostgreSQL server from the workers directly; the Ray side is given
    the file's path (read as `index --input` reads it: `iter_records`), the in-process side that reader's rows."""
    from csrv2_vdb.records import iter_records

    encoder = _encoder()
    store = open_engine(engine, tmp_path)
    try:
        for name in ("direct", "ray"):
            store.create_collection(name, sparse_dim=128, encoder=encoder.identity)
        _index_direct(store, iter_records(rows, vector_field="embedding"), encoder)
        kind, where = location(engine, tmp_path)
        report = ray_bulk_index(
            store, "ray", rows, encoder, vector_field="embedding", batch_size=BATCH, progress=False,
            options=RayOptions(address=cluster, num_workers=2), checkpoint=tmp_path / "ray.ckpt",
            worker_store=StoreSpec(kind, where) if engine == "pgvector" else None,
        )  # fmt: skip
        assert report.rows_written == N + 10 and report.batches_written == N // BATCH + 1  # 10 records repeat ids
        assert report.batches_skipped == 0
        assert not (tmp_path / "ray.ckpt").exists()  # a finished run removes its checkpoint
        _same(store, "direct", "ray")
    finally:
        store.close()


def _encoder_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if "ray::_Encoder" in " ".join(p.info["cmdline"] or [])]


def test_a_worker_sigkilled_mid_run_is_restarted_and_nothing_is_lost(cluster, rows, tmp_path):
    encoder = _encoder()
    checkpoint = tmp_path / "run.ckpt"
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if checkpoint.exists() and len(committed_batches(checkpoint)) >= 10 and (pids := _encoder_pids()):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.01)

    with open_engine("qdrant-edge", tmp_path) as store:
        for name in ("direct", "ray"):
            store.create_collection(name, sparse_dim=128, encoder=encoder.identity)
        _index_direct(store, _records(rows), encoder)
        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        report = ray_bulk_index(store, "ray", _records(rows), encoder, vector_field="embedding", batch_size=BATCH,
                                progress=False, checkpoint=checkpoint,
                                options=RayOptions(address=cluster, num_workers=2, in_flight=4))  # fmt: skip
        killer.join()
        assert killed, "no worker was killed: the run ended before 10 batches were committed"
        assert report.rows_written == N + 10
        _same(store, "direct", "ray")


DRIVER = """
import json, sys
from csrv2_vdb.adapters import open_store
from csrv2_vdb.ray_index import RayOptions, ray_bulk_index
from tests.test_ray import _encoder, _records
from pathlib import Path
address, store_dir, rows, checkpoint = sys.argv[1:5]
with open_store("qdrant-edge", store_dir) as store:
    report = ray_bulk_index(store, "ray", _records(Path(rows)), _encoder(), vector_field="embedding",
                            batch_size=200, checkpoint=checkpoint, progress=False,
                            options=RayOptions(address=address, num_workers=2))
print(json.dumps({"rows": report.rows_written, "skipped": report.batches_skipped}))
"""


def _driver(address: str, store_dir: Path, rows: Path, checkpoint: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, address, str(store_dir), str(rows), str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])  # fmt: skip


def test_the_driver_sigkilled_then_rerun_writes_only_what_is_missing(cluster, rows, tmp_path):
    encoder = _encoder()
    store_dir, checkpoint = tmp_path / "edge", tmp_path / "run.ckpt"
    with open_engine("qdrant-edge", tmp_path) as store:
        store.create_collection("ray", sparse_dim=128, encoder=encoder.identity)
    proc = _driver(cluster, store_dir, rows, checkpoint)
    deadline = time.time() + 180
    while time.time() < deadline and not (checkpoint.exists() and len(committed_batches(checkpoint)) >= 20):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(committed_batches(checkpoint))
    assert 20 <= done <= N // BATCH
    rerun = _driver(cluster, store_dir, rows, checkpoint)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert 0 < result["skipped"] <= done and result["rows"] == N + 10 - BATCH * result["skipped"]
    with open_engine("qdrant-edge", tmp_path) as store:
        store.create_collection("direct", sparse_dim=128, encoder=encoder.identity)
        _index_direct(store, _records(rows), encoder)
        _same(store, "direct", "ray")


def test_cli_index_executor_ray_embeds_texts_in_the_actors_like_the_local_path(cluster, tmp_path):
    """Texts through the real backbone in a Ray actor: the codes of `index --executor ray` match the local path's
    (indices equal; values to float rounding, the actor's torch runs on one thread)."""
    from typer.testing import CliRunner

    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.cli import app

    docs = tmp_path / "docs.jsonl"
    topics = ["skin cancer surgery", "radiation therapy", "lung screening", "chemotherapy drugs", "lymph nodes"]
    with open(docs, "w") as f:
        for i in range(30):
            f.write(json.dumps({"id": f"d{i}", "text": f"Note {i} on {topics[i % 5]} and its side effects."}) + "\n")
    for where, extra in (("local", []), ("ray", ["--executor", "ray", "--ray-address", cluster, "--num-workers", "1"])):
        result = CliRunner().invoke(app, ["index", "--input", str(docs), "--store", str(tmp_path / where),
                                          "--collection", "c", "--batch-size", "8", *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "30 documents" in result.output
    ids = [f"d{i}" for i in range(30)]
    with open_store("qdrant-edge", str(tmp_path / "local")) as a:
        local = a.codes("c", ids)
    with open_store("qdrant-edge", str(tmp_path / "ray")) as b:
        remote = b.codes("c", ids)
    np.testing.assert_array_equal(local.indices, remote.indices)
    np.testing.assert_allclose(local.values, remote.values, rtol=1e-4, atol=1e-6)


def test_executor_ray_refuses_dense_options_with_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from csrv2_vdb.cli import app

    result = CliRunner().invoke(app, ["index", "--input", str(tmp_path / "x.jsonl"), "--store", str(tmp_path / "s"),
                                      "--collection", "c", "--executor", "ray", "--mrl-dims", "64"])  # fmt: skip
    assert result.exit_code != 0 and "sparse codes only" in result.output


def test_a_ray_dataset_is_read_in_order_and_written_like_the_file(cluster, rows, tmp_path):
    import ray.data

    encoder = _encoder()
    with open_engine("qdrant-edge", tmp_path) as store:
        for name in ("direct", "ray"):
            store.create_collection(name, sparse_dim=128, encoder=encoder.identity)
        _index_direct(store, _records(rows), encoder)
        data = ray.data.read_json(str(rows))
        with pytest.raises(InvalidArgumentError, match="read tasks need some too"):  # 2 workers, 2 CPUs: a deadlock
            ray_bulk_index(store, "ray", data, encoder, vector_field="embedding", options=RayOptions(num_workers=2))
        report = ray_bulk_index(store, "ray", data, encoder, vector_field="embedding", batch_size=BATCH,
                                progress=False, options=RayOptions(address=cluster, num_workers=1))  # fmt: skip
        assert report.rows_written == N + 10
        _same(store, "direct", "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_started_with_ray_start_write_what_bulk_index_writes(tmp_path):
    """Two nodes from `ray start` on 127.0.0.1 (one CPU each, so the two actors run on different nodes), the
    driver in its own process as on a real cluster. Last in this module: `ray stop` ends every Ray process."""
    import ray as ray_api

    ray_api.shutdown()  # this module's local cluster is done with
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # token auth would need the token on every node
    address = f"127.0.0.1:{_free_port()}"
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=200000000", "--disable-usage-stats"]
    try:
        subprocess.run([ray, "start", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                        *node], env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([ray, "start", f"--address={address}", *node], env=env, check=True, capture_output=True,
                       timeout=120)  # fmt: skip
        count = f"import ray; ray.init(address={address!r}); print(sum(n['Alive'] for n in ray.nodes()))"
        nodes = subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True, timeout=120)
        assert nodes.stdout.strip().splitlines()[-1] == "2", nodes.stderr
        rows = _rows(tmp_path / "rows.jsonl")
        encoder = _encoder()
        with open_engine("qdrant-edge", tmp_path) as store:
            store.create_collection("ray", sparse_dim=128, encoder=encoder.identity)
        driver = subprocess.run([sys.executable, "-c", DRIVER, address, str(tmp_path / "edge"), str(rows),
                                 str(tmp_path / "run.ckpt")], env=env, capture_output=True, text=True, timeout=300,
                                cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        assert driver.returncode == 0, driver.stderr[-3000:]
        assert json.loads(driver.stdout.strip().splitlines()[-1]) == {"rows": 20_010, "skipped": 0}
        with open_engine("qdrant-edge", tmp_path) as store:
            store.create_collection("direct", sparse_dim=128, encoder=encoder.identity)
            _index_direct(store, _records(rows), encoder)
            _same(store, "direct", "ray")
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_bench_ray_compares_both_paths_on_the_same_texts(tmp_path, data_dir):
    import ray
    from typer.testing import CliRunner

    ray.shutdown()  # the bench starts a local cluster of its own

    from csrv2_vdb.cli import app

    result = CliRunner().invoke(app, ["bench", "ray", "--rows", "24", "--workers", "1", "--out", str(tmp_path),
                                      "--data", str(data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ray.json").read_text())
    assert report["rows"] == 24 and report["local_rows_per_s"] > 0 and report["ray_rows_per_s"] > 0
    assert report["overhead"] == pytest.approx(1 - report["ray_rows_per_s"] / report["local_rows_per_s"])
    hours = report["projection"]["hours_on"]
    assert hours["64"] == pytest.approx(4 * hours["256"])  # JSON keys; the projection scales with workers
    assert "Ray's overhead on the same cores" in (tmp_path / "ray.md").read_text()
