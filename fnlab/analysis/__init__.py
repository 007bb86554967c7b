"""Analysis, in the workflows layer: evaluation metrics (``evaluate``), the false-negative scan (``scan``,
and ``scale`` for sharded candidates on Ray), what the app's pages compute (``explore``), review
decisions (``review``), 2-D maps (``projection``) and figures (``viz``)."""
