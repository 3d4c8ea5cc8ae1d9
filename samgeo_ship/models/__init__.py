"""SAM construction and weights: the model registry (official and small configs) and checkpoint download."""
