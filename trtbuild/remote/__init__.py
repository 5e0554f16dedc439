"""The fleet remote cache's store: a step's outputs and lock record as an OCI artifact (``store.open_store``)."""
