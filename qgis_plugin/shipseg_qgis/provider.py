"""The Processing provider and its "Detect ships" algorithm (toolbox, batch mode, graphical modeller)."""

from __future__ import annotations

import json
import os
import tempfile

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeatureRequest, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterEnum, QgsProcessingParameterFeatureSource, QgsProcessingParameterFile,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination, QgsProcessingProvider, QgsVectorFileWriter,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.PyQt.QtGui import QIcon

from . import runner, settings
from .layers import local_raster_path

ICON = os.path.join(os.path.dirname(__file__), "icon.svg")
NATIVE_EXTENSIONS = ["gpkg", "geojson", "fgb"]  # written by shipseg itself; others are converted by QGIS


class ShipsegProvider(QgsProcessingProvider):
    def id(self):
        return "shipseg"

    def name(self):
        return "Shipseg"

    def longName(self):
        return "Shipseg: ships in satellite imagery with Segment Anything"

    def icon(self):
        return QIcon(ICON)

    def loadAlgorithms(self):
        self.addAlgorithm(DetectShipsAlgorithm())

    def defaultVectorFileExtension(self, hasGeometry=True):
        return "gpkg"

    def supportedOutputVectorLayerExtensions(self):
        return list(NATIVE_EXTENSIONS) + ["shp"]


def _write_prompts(source, crs_transform_context, feedback) -> tuple:
    """Write a prompt layer as GeoJSON (WGS84) for shipseg; return (path, kind) with kind "boxes" or "points"."""
    geom_type = QgsWkbTypes.geometryType(source.wkbType())
    if geom_type == QgsWkbTypes.PointGeometry:
        kind = "points"
    elif geom_type == QgsWkbTypes.PolygonGeometry:
        kind = "boxes"
    else:
        raise QgsProcessingException("The prompt layer must hold points or polygons (boxes).")
    xform = QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                   crs_transform_context)
    features = []
    for feat in source.getFeatures(QgsFeatureRequest().setNoAttributes()):
        if feedback.isCanceled():
            break
        geom = feat.geometry()
        if geom is None or geom.isEmpty():
            continue
        geom.transform(xform)
        features.append({"type": "Feature", "properties": {}, "geometry": json.loads(geom.asJson(8))})
    if not features:
        raise QgsProcessingException("The prompt layer has no features.")
    fd, path = tempfile.mkstemp(prefix=f"shipseg_{kind}_", suffix=".geojson")
    with os.fdopen(fd, "w") as fh:
        json.dump({"type": "FeatureCollection", "features": features}, fh)
    return path, kind


class DetectShipsAlgorithm(QgsProcessingAlgorithm):
    INPUT, MODEL, PROMPTS, BANDS, DEVICE, OUTPUT, SHIPS = "INPUT", "MODEL", "PROMPTS", "BANDS", "DEVICE", "OUTPUT", \
        "SHIPS"
    DEVICES = ["plugin setting", "auto", "cpu", "cuda"]

    def createInstance(self):
        return DetectShipsAlgorithm()

    def name(self):
        return "detectships"

    def displayName(self):
        return "Detect ships"

    def group(self):
        return ""

    def groupId(self):
        return ""

    def icon(self):
        return QIcon(ICON)

    def shortHelpString(self):
        return ("Finds ships in a raster (a local GeoTIFF or other GDAL file) with Segment Anything and writes them "
                "as polygons with length_m, beam_m, heading_deg and score. Runs the `shipseg detect` command in a "
                "separate process (set its path in Plugins > Shipseg > Settings). Optional prompts: a polygon "
                "layer (boxes) or a point layer. GeoJSON output is in WGS84; GeoPackage and FlatGeobuf are in the "
                "raster's CRS.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster"))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Model (.safetensors; empty: plugin setting or "
                                                     "the default model)", extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.PROMPTS, "Prompts (boxes as polygons, or points)",
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands, e.g. B04,B03,B02 (empty: the model's)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", self.DEVICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Ships",
                                                                  QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.SHIPS, "Number of ships"))

    def processAlgorithm(self, parameters, context, feedback):
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        try:
            scene = local_raster_path(raster)
            exe = settings.executable()
        except runner.ShipsegError as exc:
            raise QgsProcessingException(str(exc))
        model = self.parameterAsFile(parameters, self.MODEL, context) or settings.get("model") or None
        bands = self.parameterAsString(parameters, self.BANDS, context) or None
        dev_index = self.parameterAsEnum(parameters, self.DEVICE, context)
        device = settings.device() if dev_index == 0 else self.DEVICES[dev_index]
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        ext = os.path.splitext(output)[1].lower().lstrip(".")
        direct = ext in NATIVE_EXTENSIONS and "|" not in output and not output.startswith(("ogr:", "memory:"))
        tmpdir = tempfile.mkdtemp(prefix="shipseg_")
        shipseg_out = output if direct else os.path.join(tmpdir, "ships.gpkg")
        cleanup = []
        boxes = points = None
        source = self.parameterAsSource(parameters, self.PROMPTS, context)
        if source is not None:
            path, kind = _write_prompts(source, context.transformContext(), feedback)
            cleanup.append(path)
            boxes, points = (path, None) if kind == "boxes" else (None, path)
        cmd = runner.build_detect_command(exe, scene, shipseg_out, model=model, bands=bands, boxes=boxes,
                                          points=points, device=device)
        feedback.pushCommandInfo(" ".join(cmd))

        def progress(done, total, ships):
            if total:
                feedback.setProgress(100.0 * done / total)
            feedback.setProgressText(f"{done}/{total} tiles, {ships} ships")

        try:
            done = runner.run_shipseg(cmd, progress, feedback.isCanceled, feedback.pushDebugInfo)
        except runner.ShipsegCancelled:
            if direct and os.path.exists(output):
                os.remove(output)
            raise QgsProcessingException("Ship detection was cancelled.")
        except runner.ShipsegError as exc:
            raise QgsProcessingException(str(exc))
        finally:
            for path in cleanup:
                try:
                    os.remove(path)
                except OSError:
                    pass
        if not direct:
            self._convert(done.get("output") or shipseg_out, output, context)
        return {self.OUTPUT: output, self.SHIPS: int(done.get("ships", 0))}

    @staticmethod
    def _convert(src: str, dst: str, context) -> None:
        layer = QgsVectorLayer(src, "ships", "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"shipseg wrote {src}, but QGIS cannot open it.")
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = QgsVectorFileWriter.driverForExtension(os.path.splitext(dst)[1]) or "GPKG"
        err, msg, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(layer, dst, context.transformContext(), opts)
        if err != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"Could not write {dst}: {msg}")
