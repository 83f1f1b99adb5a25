"""The RAG examples run offline end to end and answer from the retrieved chunks."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["langchain_rag.py", "llamaindex_rag.py", "haystack_rag.py"])
def test_rag_example_answers_from_retrieved_chunks(script, data_dir):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--data", str(data_dir), "--max-chunks", "60",
         "--question", "What is the most common type of skin cancer?"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert "medical-000000" in lines["sources"]
    assert "basal cell" in lines["answer"].lower() and "most common" in lines["answer"].lower()
