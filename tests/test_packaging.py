"""The wheel installs everything under the single import root csrv2_vdb; dependencies run one way."""

import ast
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
    for sub in ("adapters", "training", "integrations", "benchmarks", "benchmarks/speed"):
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


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_library_never_imports_the_harnesses():
    """Core, adapters, training and integrations import nothing from csrv2_vdb.benchmarks (any depth, lazy
    imports included); only the CLI module mounts the harness commands."""
    offenders = {}
    for folder in ("csrv2_vdb", "adapters", "training", "integrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "csrv2_vdb" / "cli.py":
                continue
            bad = sorted(m for m in _imported_modules(path) if m.startswith("csrv2_vdb.benchmarks"))
            if bad:
                offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}
    mounted = _imported_modules(ROOT / "csrv2_vdb" / "cli.py")
    assert {m for m in mounted if m.startswith("csrv2_vdb.benchmarks")} == {"csrv2_vdb.benchmarks.cli"}
    # and the check can fail: a harness module does import the library
    assert "csrv2_vdb.embed_cache" in _imported_modules(ROOT / "benchmarks" / "cache.py")


def test_the_package_raises_only_its_own_errors():
    """Every exception the package raises derives from CSRv2Error (errors.py's promise), so callers and the CLI
    catch one type; re-raising a caught error (`raise`) is fine."""
    import builtins

    builtin_errors = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                      and issubclass(getattr(builtins, n), BaseException)}  # fmt: skip
    offenders = []
    for folder in ("csrv2_vdb", "adapters", "training", "integrations", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    func = node.exc.func
                    if isinstance(func, ast.Name) and func.id in builtin_errors - {"NotImplementedError"}:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} raises {func.id}")
    assert offenders == []
