"""A migration in its own process, so that a test can SIGKILL it mid-way; and the test's source collections.

python -m tests.migrate_worker ENGINE ROOT HEAD CHECKPOINT DELAY_PER_BATCH
ROOT holds vectors.npy and payloads.json; the source collection is created from them when missing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import CollectionNotFoundError
from csrv2_vdb.migrate import migrate
from tests.engines import location, open_engine

BATCH = 20


def make_source(engine: str, store, vectors: np.ndarray, payloads: list[dict]) -> tuple[str, str | None, list[str]]:
    """A dense collection created the way the engine's own users create one: (name, vector name, document ids)."""
    if engine == "qdrant-edge":  # Edge collections are this library's own format
        ids = [f"chunk-{i}" for i in range(len(vectors))]
        store.create_collection("dense_src", dense_dim=vectors.shape[1])
        store.upsert("dense_src", ids, vectors, payloads=payloads)
        return "dense_src", None, ids
    if engine == "qdrant-local":  # integer ids, two named vectors, cosine
        from qdrant_client import models

        store.client.create_collection(
            "dense_src",
            vectors_config={
                "minilm": models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE),
                "tiny": models.VectorParams(size=4, distance=models.Distance.DOT),
            },
        )
        points = [
            models.PointStruct(id=i, vector={"minilm": v.tolist(), "tiny": [1.0, 0, 0, 0]}, payload=p)
            for i, (v, p) in enumerate(zip(vectors, payloads, strict=True))
        ]
        store.client.upsert("dense_src", points=points)
        return "dense_src", "minilm", [str(i) for i in range(len(vectors))]
    if engine.startswith("elasticsearch"):  # an index mapped by hand: dense_vector + keyword/long fields
        ids = [f"es-{i}" for i in range(len(vectors))]
        index = store.prefix + "dense_src"
        store.client.indices.create(index=index, mappings={"properties": {
            "emb": {"type": "dense_vector", "dims": vectors.shape[1], "index": True, "similarity": "cosine"},
            "title": {"type": "keyword"}, "n": {"type": "long"}}})  # fmt: skip
        from elasticsearch import helpers

        actions = [{"_index": index, "_id": doc_id, "_source": {**p, "emb": v.tolist()}}
                   for doc_id, v, p in zip(ids, vectors, payloads, strict=True)]  # fmt: skip
        helpers.bulk(store.client, actions)
        return "dense_src", None, ids
    if engine == "pgvector":  # a table of the user's own: bigint key, a vector column, plain columns
        with store.client.connection() as conn:
            conn.execute(f"CREATE TABLE dense_src (doc bigint PRIMARY KEY, emb vector({vectors.shape[1]}), "
                         "title text, n int, tags text[])")  # fmt: skip
            rows = [(2000 + i, "[" + ",".join(map(repr, v.tolist())) + "]", p["title"], p["n"], p["tags"])
                    for i, (v, p) in enumerate(zip(vectors, payloads, strict=True))]  # fmt: skip
            conn.cursor().executemany("INSERT INTO dense_src VALUES (%s, %s, %s, %s, %s)", rows)
        return "dense_src", None, [str(2000 + i) for i in range(len(vectors))]
    from pymilvus import DataType  # Milvus: INT64 primary key, a scalar field and dynamic fields

    schema = store.client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("doc", DataType.INT64, is_primary=True)
    schema.add_field("emb", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    index = store.client.prepare_index_params()
    index.add_index("emb", index_type="FLAT", metric_type="COSINE")
    store.client.create_collection("dense_src", schema=schema, index_params=index, consistency_level="Strong")
    rows = [{"doc": 1000 + i, "emb": v.tolist(), **p} for i, (v, p) in enumerate(zip(vectors, payloads, strict=True))]
    store.client.insert("dense_src", rows)
    return "dense_src", None, [str(1000 + i) for i in range(len(vectors))]


def main() -> None:
    engine, root, head, checkpoint, delay = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    encode = CSRv2Encoder.encode_embeddings

    def slow(self, dense, k=None):  # the write pass encodes one batch per call
        time.sleep(float(delay))
        return encode(self, dense, k)

    CSRv2Encoder.encode_embeddings = slow  # type: ignore[method-assign]
    with open_engine(engine, root) as store:
        vector = "minilm" if engine == "qdrant-local" else None
        try:
            store.dense_source("dense_src", vector)  # made by the killed run (a user table is not listed)
        except CollectionNotFoundError:
            vectors = np.load(root / "vectors.npy")
            _, vector, _ = make_source(engine, store, vectors, json.loads((root / "payloads.json").read_text()))
        report = migrate(
            store, "dense_src", vector=vector, head=head, batch_size=BATCH, holdout=0, checkpoint=Path(checkpoint),
            run={"engine": engine, "store": location(engine, root)[1]}, progress=False, log=lambda _: None,
        )  # fmt: skip
    print(f"points={report.points} resumed={report.write['batches_resumed']}")


if __name__ == "__main__":
    main()
