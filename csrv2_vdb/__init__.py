"""csrv2-vdb: ultra-sparse CSRv2 embeddings in vector databases.

texts -> `Backbone` (dense) -> `SparseHead` (top-k) -> `SparseBatch` -> a `SparseStore` adapter.
Engine clients are imported only by their adapters (`csrv2_vdb.adapters.*`).
"""

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder, mrl_truncate
from csrv2_vdb.filters import Range
from csrv2_vdb.head import SparseHead
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import Hit, SparseStore

__all__ = [
    "Backbone",
    "CSRv2Encoder",
    "Hit",
    "MRLEncoder",
    "Range",
    "SparseBatch",
    "SparseHead",
    "SparseStore",
    "mrl_truncate",
]
__version__ = "0.1.0"
