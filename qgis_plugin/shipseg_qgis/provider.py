"""The Processing provider and its "Detect ships" algorithm (toolbox, batch mode, graphical modeller)."""

from __future__ import annotations

import os
import shutil
import tempfile

from qgis.core import (QgsFeatureRequest, QgsProcessing, QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingOutputNumber,
                       QgsProcessingParameterEnum, QgsProcessingParameterFeatureSource, QgsProcessingParameterFile,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination, QgsProcessingProvider, QgsVectorFileWriter,
                       QgsVectorLayer)
from qgis.PyQt.QtGui import QIcon

from . import runner, settings
from .layers import local_raster_path
from .prompts import write_prompts
from .styling import style_ships

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


class ShipsStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles the output layer QGIS loads after a run like the toolbar button's (outline, length labels)."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - the name QGIS calls
        if isinstance(layer, QgsVectorLayer):
            style_ships(layer)


_STYLER = ShipsStyler()  # QGIS keeps a pointer, not a reference: it must outlive every run


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
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Model (.safetensors bundle or official SAM .pth; "
                                                     "empty: plugin setting or the default model)", optional=True,
                                                     fileFilter="Models (*.safetensors *.pth)"))
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
        tmpdir = None if direct else tempfile.mkdtemp(prefix="shipseg_")
        shipseg_out = output if direct else os.path.join(tmpdir, "ships.gpkg")
        try:
            done = self._run(exe, scene, shipseg_out, model, bands, device, parameters, context, feedback)
            if not direct:
                self._convert(done.get("output") or shipseg_out, output, context)
        except QgsProcessingException:
            if direct:
                runner.remove_files([output])
            raise
        finally:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
        if context.willLoadLayerOnCompletion(output):
            details = context.layerToLoadOnCompletionDetails(output)
            details.name = f"{raster.name()} ships"
            details.setPostProcessor(_STYLER)
        feedback.pushInfo(f"{int(done.get('ships', 0))} ships found in '{raster.name()}'.")
        return {self.OUTPUT: output, self.SHIPS: int(done.get("ships", 0))}

    def _run(self, exe, scene, shipseg_out, model, bands, device, parameters, context, feedback) -> dict:
        """Write the prompts, run shipseg to ``shipseg_out`` and return its final event."""
        cleanup = []
        boxes = points = None
        source = self.parameterAsSource(parameters, self.PROMPTS, context)
        if source is not None:
            try:
                path, kind = write_prompts(source.getFeatures(QgsFeatureRequest().setNoAttributes()),
                                           source.sourceCrs(), source.wkbType(), context.transformContext(),
                                           feedback.isCanceled)
            except runner.ShipsegError as exc:
                raise QgsProcessingException(str(exc))
            cleanup.append(path)
            boxes, points = (path, None) if kind == "boxes" else (None, path)
        cmd = runner.build_detect_command(exe, scene, shipseg_out, model=model, bands=bands, boxes=boxes,
                                          points=points, device=device)
        feedback.pushCommandInfo(" ".join(cmd))

        def progress(done, total, _ships):  # the dialog's progress bar; log lines would flood the log
            if total:
                feedback.setProgress(100.0 * done / total)

        try:
            return runner.run_shipseg(cmd, progress, feedback.isCanceled, feedback.pushDebugInfo)
        except runner.ShipsegCancelled:
            raise QgsProcessingException("Ship detection was cancelled.")
        except runner.ShipsegError as exc:
            raise QgsProcessingException(str(exc))
        finally:
            runner.remove_files(cleanup)

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
