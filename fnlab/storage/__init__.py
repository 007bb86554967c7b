"""Storage layer: the run store (``runs``: staging folder, atomic rename, checksums)."""
