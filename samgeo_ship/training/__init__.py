"""Fine-tuning SAM on ship polygons: prepared datasets -> prompts and losses -> a ShipSam bundle.

data (tiles, split), augment (square symmetries), sampler (each epoch's tiles), prompts (jittered boxes, points),
cache (frozen-encoder embeddings on disk), batch (one batch's embeddings and loss), losses, modes (frozen / lora /
full), evaluate (validation), state and checkpoint (resume), trainer (the loop)."""

from samgeo_ship.training.trainer import TrainConfig, Trainer, TrainResult, train

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train"]
