"""Fine-tuning SAM on ship polygons: prepared datasets -> prompts and losses -> a ShipSam bundle.

data (tiles, split), augment (square symmetries), prompts (jittered boxes, points), cache (frozen-encoder
embeddings on disk), losses, modes (frozen / lora / full), evaluate (validation), checkpoint (resume), trainer."""

from samgeo_ship.training.trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
