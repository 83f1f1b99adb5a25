"""The wheel installs everything under the single import root csrv2_vdb."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_one_import_root(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("csrv2_vdb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"csrv2_vdb"}
    for sub in ("adapters", "training", "integrations"):
        assert f"csrv2_vdb/{sub}/__init__.py" in names
    assert "csrv2_vdb/adapters/qdrant_edge.py" in names and "csrv2_vdb/training/trainer.py" in names
    assert "csrv2_vdb/heads/minilm-medical-csrv2-k8/model.safetensors" in names


def test_core_import_loads_no_engine_client():
    code = (
        "import sys, csrv2_vdb, csrv2_vdb.store, csrv2_vdb.sparse, csrv2_vdb.encoder; "
        "bad = [m for m in ('qdrant_edge', 'qdrant_client', 'pymilvus', 'elasticsearch') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
