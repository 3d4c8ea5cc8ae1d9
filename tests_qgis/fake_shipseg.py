"""A stand-in for `shipseg` that obeys the `detect` contract, for plugin tests that must not wait for SAM.

It "detects" the truth ships written beside the scene (SCENE with .geojson), after emitting JSON progress lines.
Environment knobs: FAKE_SHIPSEG_TILES (default 4), FAKE_SHIPSEG_DELAY (seconds per tile, default 0.05),
FAKE_SHIPSEG_PIDFILE (write this process's pid and its child's), FAKE_SHIPSEG_CHILD=1 (start a child process
that sleeps, like a data-loader worker, to check that a cancel kills the whole tree), FAKE_SHIPSEG_LOG (write the
arguments and the number of prompt features there), FAKE_SHIPSEG_VERSION_DELAY (seconds `--version` takes).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def fail(msg):
    print(f"Error: {msg}", file=sys.stderr)
    sys.exit(2)


def write(features, scene, out):
    ext = out.suffix.lower()
    tmp = out.with_name(f".{out.name}.tmp{ext}")
    if ext == ".geojson":
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    elif ext in (".gpkg", ".fgb"):
        from osgeo import gdal, ogr, osr
        gdal.UseExceptions()
        ds_in = gdal.Open(str(scene))
        srs = osr.SpatialReference(wkt=ds_in.GetProjection())
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        wgs = osr.SpatialReference()
        wgs.ImportFromEPSG(4326)
        wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        xform = osr.CoordinateTransformation(wgs, srs)
        drv = ogr.GetDriverByName("GPKG" if ext == ".gpkg" else "FlatGeobuf")
        ds = drv.CreateDataSource(str(tmp))
        lyr = ds.CreateLayer("ships", srs, ogr.wkbPolygon)
        for name, kind in (("ship_id", ogr.OFTInteger), ("length_m", ogr.OFTReal), ("beam_m", ogr.OFTReal),
                           ("heading_deg", ogr.OFTReal), ("score", ogr.OFTReal)):
            lyr.CreateField(ogr.FieldDefn(name, kind))
        for f in features:
            feat = ogr.Feature(lyr.GetLayerDefn())
            for k, v in f["properties"].items():
                if feat.GetFieldIndex(k) >= 0:
                    feat.SetField(k, v)
            geom = ogr.CreateGeometryFromJson(json.dumps(f["geometry"]))
            geom.Transform(xform)
            feat.SetGeometry(geom)
            lyr.CreateFeature(feat)
        ds = None
    else:
        fail(f"{out}: unsupported output format {ext}")
    os.replace(tmp, out)


def detect(args):
    scene = Path(args.scene)
    if not scene.is_file():
        fail(f"{scene}: no such file")
    truth = scene.with_suffix(".geojson")
    if not truth.is_file():
        fail(f"{scene}: the fake shipseg needs its truth {truth.name} beside it")
    out = Path(args.output or scene.with_name(scene.stem + "_ships.geojson"))
    child = None
    if os.environ.get("FAKE_SHIPSEG_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if os.environ.get("FAKE_SHIPSEG_PIDFILE"):
        Path(os.environ["FAKE_SHIPSEG_PIDFILE"]).write_text(
            json.dumps({"pid": os.getpid(), "child": child.pid if child else None}))
    features = json.loads(truth.read_text())["features"]
    for f in features:
        f["properties"]["score"] = 0.9
    tiles = int(os.environ.get("FAKE_SHIPSEG_TILES", "4"))
    delay = float(os.environ.get("FAKE_SHIPSEG_DELAY", "0.05"))
    print("fake shipseg: loading model", file=sys.stderr, flush=True)
    for i in range(tiles):
        time.sleep(delay)
        ships = len(features) * (i + 1) // tiles
        if args.progress == "json":
            print(json.dumps({"event": "progress", "tiles_done": i + 1, "tiles_total": tiles, "ships": ships}),
                  flush=True)
    write(features, scene, out)
    if child:
        child.kill()
    if args.progress == "json":
        print(json.dumps({"event": "done", "output": str(out), "ships": len(features)}), flush=True)


def main():
    if sys.argv[1:] == ["--version"]:
        time.sleep(float(os.environ.get("FAKE_SHIPSEG_VERSION_DELAY", "0")))
        print("shipseg, version 0.0.0-fake")
        return
    p = argparse.ArgumentParser(prog="shipseg")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect")
    d.add_argument("scene")
    d.add_argument("-m", "--model")
    d.add_argument("-o", "--output")
    d.add_argument("--bands")
    d.add_argument("--boxes")
    d.add_argument("--points")
    d.add_argument("--device", default="auto")
    d.add_argument("--progress")
    d.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    for opt in ("boxes", "points", "model"):
        if getattr(args, opt) and not Path(getattr(args, opt)).is_file():
            fail(f"{getattr(args, opt)}: no such file (--{opt})")
    if os.environ.get("FAKE_SHIPSEG_LOG"):
        prompts = args.points or args.boxes
        n = len(json.loads(Path(prompts).read_text())["features"]) if prompts else 0
        Path(os.environ["FAKE_SHIPSEG_LOG"]).write_text(json.dumps({"argv": sys.argv[1:], "prompts": n}))
    detect(args)


if __name__ == "__main__":
    main()
