"""On-disk cache of frozen-encoder image embeddings: each tile variant is encoded once, then reused by every
epoch and every later run with the same encoder weights and preprocessing.

A key is the SHA-256 of everything the embedding depends on (chip bytes, augmentation variant, encoder weights,
input size, preprocessing version), so a stale entry can never be read: change any of them and the key changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from samgeo_ship.models.bundle import tensors_sha256

# Bump when chip_to_image (resize, band handling) changes: old embeddings then stop matching.
PREPROCESS_VERSION = "chip_to_image/1"


def default_cache_dir() -> Path:
    """$SHIPSEG_HOME/embeddings, else $XDG_CACHE_HOME/shipseg/embeddings, else ~/.cache/shipseg/embeddings."""
    if os.environ.get("SHIPSEG_HOME"):
        return Path(os.environ["SHIPSEG_HOME"]).expanduser() / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "shipseg" / "embeddings"


def encoder_sha256(sam) -> str:
    """SHA-256 of a Sam's image encoder weights and pixel normalisation (what the embedding depends on)."""
    state = {f"image_encoder.{k}": v for k, v in sam.image_encoder.state_dict().items()}
    state.update(pixel_mean=sam.pixel_mean, pixel_std=sam.pixel_std)
    return tensors_sha256(state)


def embedding_key(chip: np.ndarray, variant: int, encoder_hash: str, img_size: int) -> str:
    """Cache key of one tile chip ((C, T, T) uint8, before augmentation) in one augmentation variant."""
    h = hashlib.sha256()
    h.update(f"{PREPROCESS_VERSION}|{img_size}|{encoder_hash}|{variant}|{chip.dtype}|{chip.shape}|".encode())
    h.update(np.ascontiguousarray(chip).tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """A directory of ``<key[:2]>/<key>.npy`` float32 (C, h, w) embeddings. Writes are atomic (temporary file,
    then rename), so concurrent runs sharing a cache never read half a file."""

    def __init__(self, root):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached (C, h, w) embedding, or None (a damaged file counts as missing and is rewritten later)."""
        path = self._path(key)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(array)

    def put(self, key: str, embedding: torch.Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, embedding.detach().to("cpu", torch.float32).numpy())
        os.replace(tmp, path)
