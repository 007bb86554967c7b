"""Training, in the workflows layer: the training objective that composes sampler, loss and momentum
queue (``objective``) and the training loop that loads data, runs epochs and writes a run (``train``)."""
