"""Bulk indexing on a two-node Ray cluster started with `ray start` on 127.0.0.1 (one CPU per node, so the two
actors run on different nodes); the driver is a separate process, as on a real cluster. Runs in the "ray"
xdist group after tests/test_ray.py: `ray stop` ends every Ray process of the machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engines import open_engine
from tests.test_ray import DRIVER, _encoder, _index_direct, _records, _rows, _same

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_started_with_ray_start_write_what_bulk_index_writes(tmp_path):
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
    from typer.testing import CliRunner

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
