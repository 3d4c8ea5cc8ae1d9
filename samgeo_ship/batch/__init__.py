"""Batch processing of satellite archives: resumable, failure-isolating, in process, on local worker processes or on
a Dask cluster. ``run_batch(source, outdir)`` is the whole API; ``process_scene`` is the work of one scene.

OUTDIR after a run::

    <scene_id>.geojson|.gpkg|.fgb|.parquet  one per done scene (GeoJSON in WGS84 per RFC 7946; the others in
                                            the scene CRS), each written to a temporary name and renamed
    ships.parquet                           GeoParquet (WGS84) of the ships of every done scene of the input, with
                                            columns scene_id and acquired (UTC timestamp or null)
    manifest.json                           the state of every scene (below)
    .shipseg-batch.lock                     held (flock) while a driver runs, so the manifest has one writer

manifest.json (rewritten whole after every scene: temp file, fsync, os.replace; so it is always the previous or
the next complete version)::

    {"format": "shipseg-batch-manifest/1",
     "scenes": {"<scene_id>": {"state": "done" | "failed" | "skipped",
                               "source": "<scene path or URL>",
                               "output": "<file name in OUTDIR>" | null,
                               "sha256": "<hex SHA-256 of output>" | null,
                               "ships": <int>, "acquired": "<RFC 3339 UTC>" | null,
                               "error": "<one line: why it failed or was skipped>" | null,
                               "seconds": <float>, "worker": "<host>:<pid>",
                               "model_loads": <model loads in that worker process so far>,
                               "runs": <times a worker processed it, over all runs>,
                               "finished": "<RFC 3339 UTC>"}},
     "merged": {"inputs": "<hash of the done outputs merged>", "sha256": "<of ships.parquet>", "ships": <int>}}

A rerun processes only scenes that are not recorded done, or whose output is missing or no longer has the recorded
SHA-256 (or was written in another format). "skipped" marks input entries that cannot be processed at all (a STAC
item without a usable asset). A scene's output appears before its "done" record, so a crash in between costs that
scene a redo and nothing else; a scene is never redone once its record is written and its output is intact.

Scene ids come from STAC item ids or file stems (unsafe characters -> "_"; stems shared by different files get
"-" and 8 hex digits of their path's SHA-1). ``acquired`` comes from STAC ``properties.datetime`` (or
``start_datetime``), else the TIFF tag TIFFTAG_DATETIME (taken as UTC), else null.
"""

from samgeo_ship.batch.inputs import SceneRef, discover_scenes
from samgeo_ship.batch.manifest import MANIFEST, Manifest
from samgeo_ship.batch.runner import MERGED, BatchSummary, merge_outputs, run_batch
from samgeo_ship.batch.worker import process_scene

__all__ = ["BatchSummary", "MANIFEST", "MERGED", "Manifest", "SceneRef", "discover_scenes",
           "merge_outputs", "process_scene", "run_batch"]
