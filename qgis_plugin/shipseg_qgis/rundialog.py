"""The small dialog the toolbar button opens: raster, model, bands, prompts and output for one run, prefilled with
the last choices."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsMapLayerProxyModel, QgsMapLayerType, QgsProject, QgsVectorFileWriter
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLineEdit

from . import runner, settings


@dataclass
class RunChoices:
    layer: object  # the raster layer
    model: str = ""
    bands: str = ""
    prompts: object = None  # a point or polygon layer, or None
    selected_only: bool = False
    output_format: str = "gpkg"
    output_dir: str = ""


class RunDialog(QDialog):
    def __init__(self, active_layer=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Detect ships")
        self.setMinimumWidth(620)
        form = QFormLayout(self)
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(QgsMapLayerProxyModel.RasterLayer)
        if active_layer is not None and active_layer.type() == QgsMapLayerType.RasterLayer:
            self.raster.setLayer(active_layer)
        form.addRow("Raster", self.raster)
        self.model = QgsFileWidget()
        self.model.setFilter("Models (*.safetensors *.pth)")
        self.model.setFilePath(settings.get("last_model"))
        settings.fit_placeholder(self.model.lineEdit(), _default_model_text())
        form.addRow("Model", self.model)
        self.bands = QLineEdit(settings.get("bands"))
        settings.fit_placeholder(self.bands, "the model's bands; or names / numbers, e.g. B04,B03,B02 or 1,2,3")
        form.addRow("Bands", self.bands)
        self.prompts = QgsMapLayerComboBox()
        self.prompts.setFilters(QgsMapLayerProxyModel.PointLayer | QgsMapLayerProxyModel.PolygonLayer)
        self.prompts.setAllowEmptyLayer(True, "none: find every ship")
        self.prompts.setLayer(QgsProject.instance().mapLayer(settings.get("prompts")))
        form.addRow("Prompts (one ship per point or box)", self.prompts)
        self.selected_only = QCheckBox("Selected features only")
        self.selected_only.setChecked(settings.get("selected_only") == "true")
        form.addRow("", self.selected_only)
        self.output_format = QComboBox()
        readable = QgsVectorFileWriter.supportedFormatExtensions()  # GeoParquet only where QGIS's GDAL has it
        self.output_format.addItems([f for f in runner.OUTPUT_FORMATS if f in readable])
        self.output_format.setCurrentText(settings.output_format())
        form.addRow("Output format", self.output_format)
        self.output_dir = QgsFileWidget()
        self.output_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_dir.setFilePath(settings.get("output_dir"))
        settings.fit_placeholder(self.output_dir.lineEdit(), "empty: the project's folder, else the temporary folder")
        form.addRow("Output folder", self.output_dir)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Detect ships")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def choices(self) -> RunChoices:
        return RunChoices(layer=self.raster.currentLayer(), model=self.model.filePath().strip(),
                          bands=self.bands.text().strip(), prompts=self.prompts.currentLayer(),
                          selected_only=self.selected_only.isChecked(),
                          output_format=self.output_format.currentText(), output_dir=self.output_dir.filePath())

    def accept(self):
        c = self.choices()
        settings.set("last_model", c.model)
        settings.set("bands", c.bands)
        settings.set("prompts", c.prompts.id() if c.prompts is not None else "")
        settings.set("selected_only", "true" if c.selected_only else "false")
        settings.set("output_format", c.output_format)
        settings.set("output_dir", c.output_dir)
        super().accept()


def _default_model_text() -> str:
    model = settings.get("model")
    return f"empty: {model} (Settings)" if model else "empty: the model shipped with shipseg"
