"""Bulk indexing: killed and resumed, faults injected, bad checkpoints refused."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from csrv2_vdb.adapters import open_store
from csrv2_vdb.bulk import bulk_index, committed_batches
from csrv2_vdb.errors import CheckpointError
from csrv2_vdb.sparse import SparseBatch
from tests.bulk_worker import BATCH, DIM, records, vectors_for
from tests.engines import location

ROOT = Path(__file__).resolve().parents[1]
N = 2000


def _worker(kind: str, location: str, checkpoint: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bulk_worker", kind, location, str(N), str(checkpoint), str(delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _assert_exactly_indexed(kind: str, location: str) -> None:
    expected = vectors_for([str(i) for i in range(N)])
    with open_store(kind, location) as store:
        assert store.count("bulk") == N  # stable ids: replayed batches overwrote, none duplicated
        hits = store.search("bulk", expected, limit=1)
    for i, row in enumerate(hits):
        own = float(expected[i : i + 1].dot(expected[i : i + 1])[0, 0])
        assert row[0].id == f"doc-{i}" and row[0].score == pytest.approx(own, rel=1e-6)
        assert row[0].payload == {"text": str(i), "n": i}


@pytest.mark.parametrize("engine", ["milvus-lite", "qdrant-edge", "qdrant-local", "pgvector"])
def test_sigkill_mid_run_then_resume(engine, tmp_path):
    kind, where = location(engine, tmp_path)
    checkpoint = tmp_path / "run.checkpoint"
    proc = _worker(kind, where, checkpoint, delay=0.15)
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.exists() and len(committed_batches(checkpoint)) >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # kill whatever the worker started (Milvus Lite runs its engine in a child process)
    subprocess.run(["pkill", "-9", "-s", str(proc.pid)], check=False)
    done = committed_batches(checkpoint)
    assert 3 <= len(done) < N // BATCH, done

    again = _worker(kind, where, checkpoint, delay=0.0)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    skipped = int(out.split("skipped_batches=")[1])
    assert skipped >= 3
    assert not checkpoint.exists()  # a finished run removes its checkpoint
    _assert_exactly_indexed(kind, where)


class FlakyStore:
    """Wraps a store; upsert raises ConnectionError on the listed call numbers (an engine that drops out)."""

    transient_errors = (ConnectionError,)

    def __init__(self, store, fail_on: set[int], error: type[Exception] = ConnectionError) -> None:
        self.store, self.fail_on, self.error, self.calls = store, fail_on, error, 0

    def upsert(self, *args, **kwargs):
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.error(f"injected failure on call {self.calls}")
        return self.store.upsert(*args, **kwargs)


def test_transient_failures_are_retried_until_every_row_is_written(tmp_path):
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        store.create_collection("bulk", sparse_dim=DIM)
        flaky = FlakyStore(store, fail_on={2, 3, 4, 9})
        report = bulk_index(flaky, "bulk", records(N), vectors_for, batch_size=BATCH, backoff=0.01, progress=False)
        assert report.retries == 4 and report.rows_written == N
        assert store.count("bulk") == N


def test_a_hard_error_stops_the_run_and_the_checkpoint_keeps_progress(tmp_path):
    checkpoint = tmp_path / "ck"
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        store.create_collection("bulk", sparse_dim=DIM)
        broken = FlakyStore(store, fail_on={6}, error=ValueError)
        with pytest.raises(ValueError, match="call 6"):
            bulk_index(broken, "bulk", records(N), vectors_for, batch_size=BATCH, checkpoint=checkpoint,
                       writers=1, progress=False)  # fmt: skip
        assert committed_batches(checkpoint) == set(range(5))
        report = bulk_index(store, "bulk", records(N), vectors_for, batch_size=BATCH, checkpoint=checkpoint,
                            progress=False)  # fmt: skip
        assert report.batches_skipped == 5 and report.rows_written == N - 5 * BATCH
        assert store.count("bulk") == N
        with pytest.raises(ConnectionError):  # retries are bounded
            bulk_index(FlakyStore(store, fail_on=set(range(1, 10))), "bulk", records(200), vectors_for,
                       batch_size=BATCH, max_retries=2, backoff=0.0, progress=False)  # fmt: skip


def test_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoint = tmp_path / "ck"
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        store.create_collection("bulk", sparse_dim=DIM)
        run = {"input": "a.jsonl", "k": 8}
        with pytest.raises(ConnectionError):  # a run that dies after two committed batches
            bulk_index(FlakyStore(store, fail_on={3, 4}), "bulk", records(10), vectors_for, checkpoint=checkpoint,
                       run=run, batch_size=2, writers=1, max_retries=1, backoff=0.0, progress=False)  # fmt: skip
        assert committed_batches(checkpoint) == {0, 1} and store.count("bulk") == 4
        for other, field in (({"input": "b.jsonl", "k": 8}, "input"), ({"input": "a.jsonl", "k": 4}, "k")):
            with pytest.raises(CheckpointError, match=f"another run: {field} was"):
                bulk_index(store, "bulk", records(10), vectors_for, checkpoint=checkpoint, run=other, batch_size=2,
                           progress=False)  # fmt: skip
        with pytest.raises(CheckpointError, match="batch_size was 2 there and is 5 now"):
            bulk_index(store, "bulk", records(10), vectors_for, checkpoint=checkpoint, run=run, batch_size=5,
                       progress=False)  # fmt: skip
        assert store.count("bulk") == 4  # nothing written by the refused runs
        report = bulk_index(store, "bulk", records(10), vectors_for, checkpoint=checkpoint, run=run, batch_size=2,
                            progress=False)  # fmt: skip
        assert report.batches_skipped == 2 and store.count("bulk") == 10 and not checkpoint.exists()


def test_a_checkpoint_that_recorded_nothing_does_not_block_a_corrected_run(tmp_path):
    """A run that failed on its first batch (say, a wrong setting) committed nothing: the corrected run starts."""
    checkpoint = tmp_path / "ck"
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        store.create_collection("bulk", sparse_dim=DIM)
        with pytest.raises(ConnectionError):
            bulk_index(FlakyStore(store, fail_on={1, 2}), "bulk", records(10), vectors_for, checkpoint=checkpoint,
                       run={"k": 4}, max_retries=1, backoff=0.0, progress=False)  # fmt: skip
        assert committed_batches(checkpoint) == set()
        bulk_index(store, "bulk", records(10), vectors_for, checkpoint=checkpoint, run={"k": 8}, progress=False)
        assert store.count("bulk") == 10 and not checkpoint.exists()


def test_repeated_ids_in_a_batch_keep_the_last_record_and_dense_works(tmp_path):
    rows = [{"id": "x", "text": "1", "v": 1}, {"id": "y", "text": "2", "v": 2}, {"id": "x", "text": "3", "v": 3}]

    def encode(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 4), dtype=np.float32)
        out[np.arange(len(texts)), [int(t) for t in texts]] = 1.0
        return out

    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        store.create_collection("d", dense_dim=4)
        bulk_index(store, "d", rows, encode, progress=False)
        assert store.count("d") == 2
        hit = store.search("d", encode(["3"]), limit=1)[0][0]
        assert (hit.id, hit.payload["v"]) == ("x", 3)
    assert isinstance(vectors_for(["1"]), SparseBatch)


def _cli_index(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "csrv2_vdb.cli", "index", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_after(proc: subprocess.Popen, checkpoint: Path, batches: int, sig: int) -> tuple[str, str]:
    """Send `sig` once the run has committed more than `batches` batches; the run's output."""
    deadline = time.time() + 240
    while time.time() < deadline:
        if checkpoint.exists() and len(committed_batches(checkpoint)) > batches:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.communicate(timeout=120)


def test_cli_interrupt_kill_and_resume_elsewhere(tmp_path, head_dir):
    """Ctrl-C says how to resume; after a SIGKILL, a re-run against another store, k or head is refused
    (exit 2, naming the field, nothing written there); the same command then completes the index in full."""
    import torch

    from csrv2_vdb.head import SparseHead

    n = 1500
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 37}"}) + "\n"
                            for i in range(n)))  # fmt: skip
    torch.manual_seed(1)
    other_head = SparseHead(384, 1536, k=8).save(tmp_path / "other-head")
    store = tmp_path / "db"
    checkpoint = tmp_path / "run.ckpt"
    base = ["--input", str(data), "--collection", "c", "--batch-size", "8", "--checkpoint", str(checkpoint)]
    same = [*base, "--head", str(head_dir), "--store", str(store)]

    _, err = _stop_after(_cli_index(same), checkpoint, 2, signal.SIGINT)
    assert "re-run the same command to resume" in err and str(checkpoint) in err, err
    killed = _cli_index(same)
    _stop_after(killed, checkpoint, 6, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    # Another head is refused twice over: the collection records the head that wrote it (checked first), and
    # the checkpoint names it too; another store or k meets the checkpoint's identity.
    for other, message in (
        ([*base, "--head", str(head_dir), "--store", str(tmp_path / "other-db")], "belongs to another run: store was"),
        ([*same, "--k", "4"], "belongs to another run: k was"),
        ([*base, "--head", str(other_head), "--store", str(store)], "are not comparable"),
    ):
        refused = subprocess.run([sys.executable, "-m", "csrv2_vdb.cli", "index", *other], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert message in refused.stderr and "documents in" not in refused.stderr
    with open_store("qdrant-edge", str(tmp_path / "other-db")) as db:
        assert db.count("c") == 0
    done = subprocess.run([sys.executable, "-m", "csrv2_vdb.cli", "index", *same], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"resuming from checkpoint {checkpoint}" in done.stderr and f"c: {n} documents" in done.stderr
    assert not checkpoint.exists()
    with open_store("qdrant-edge", str(store)) as db:
        assert db.count("c") == n
