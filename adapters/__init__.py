"""Engine adapters implementing `csrv2_vdb.store.SparseStore`; each imports its engine client lazily."""
