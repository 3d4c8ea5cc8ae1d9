"""The batch manifest, OUTDIR/manifest.json: one record per scene, rewritten whole and atomically after every
result, so that a crash at any moment leaves either the previous or the next complete version."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from samgeo_ship.errors import fail

MANIFEST = "manifest.json"
FORMAT = "shipseg-batch-manifest/1"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Manifest:
    """``scenes``: scene id -> record (state, source, output, sha256, ships, acquired, error, seconds, worker,
    runs, finished). Only the batch driver writes it."""

    def __init__(self, path: Path, scenes: dict | None = None, merged: dict | None = None):
        self.path = Path(path)
        self.scenes: dict[str, dict] = scenes or {}
        self.merged: dict = merged or {}

    @classmethod
    def load(cls, outdir) -> "Manifest":
        path = Path(outdir) / MANIFEST
        if not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT or not isinstance(doc.get("scenes"), dict):
                raise ValueError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
        except (OSError, ValueError, AttributeError) as exc:
            raise fail(path, f"is not a readable shipseg batch manifest ({exc}); move it away to start afresh")
        return cls(path, doc["scenes"], doc.get("merged"))

    def is_done(self, scene_id: str) -> bool:
        """Recorded done and its output is still there with the recorded SHA-256."""
        rec = self.scenes.get(scene_id)
        if not rec or rec.get("state") != DONE:
            return False
        out = self.path.parent / rec["output"]
        return out.is_file() and sha256_file(out) == rec.get("sha256")

    def record(self, result: dict) -> dict:
        """Store one scene's result (see samgeo_ship.batch.worker.process_scene) and save the manifest."""
        old = self.scenes.get(result["scene_id"], {})
        rec = {k: result.get(k) for k in ("state", "source", "output", "sha256", "ships", "acquired", "error",
                                          "seconds", "worker", "model_loads")}
        rec["runs"] = old.get("runs", 0) + (rec["state"] != SKIPPED)  # times a worker processed it, all runs
        rec["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.scenes[result["scene_id"]] = rec
        self.save()
        return rec

    def save(self) -> None:
        doc = {"format": FORMAT, "scenes": self.scenes, "merged": self.merged}
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())  # the rename must never expose a file whose bytes are not on disk yet
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
