"""Retrieval, in the data-and-models layer: row normalisation, exact and approximate top-k over faiss or
torch (``similarity``), and the momentum encoders with the feature queue that extends a batch's
candidate pool (``memory``)."""
