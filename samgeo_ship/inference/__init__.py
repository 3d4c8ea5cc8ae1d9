"""Detection: the batched tile predictor and scene-level streaming detection (and evaluation against truth)."""
