"""The plugin's settings (QgsSettings under ``shipseg/``) and the small dialog that edits them."""

from __future__ import annotations

from qgis.core import QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QPushButton,
                                 QVBoxLayout)

from . import runner

KEY = "shipseg/"
DEFAULTS = {"executable": "", "model": "", "device": "auto", "output_format": "gpkg", "output_dir": ""}


def get(name: str) -> str:
    value = QgsSettings().value(KEY + name, DEFAULTS[name])
    return "" if value is None else str(value)


def set(name: str, value: str) -> None:  # noqa: A001 - mirrors QgsSettings
    QgsSettings().setValue(KEY + name, value or "")


def executable() -> str:
    """The configured (or found) shipseg executable; raises runner.ShipsegNotFound with what to do."""
    return runner.resolve_executable(get("executable"))


def device() -> str:
    dev = get("device")
    return dev if dev in runner.DEVICES else "auto"


def output_format() -> str:
    fmt = get("output_format").lower().lstrip(".")
    return fmt if fmt in runner.OUTPUT_FORMATS else "gpkg"


class SettingsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Shipseg settings")
        form = QFormLayout()
        self.exe = QgsFileWidget()
        self.exe.setStorageMode(QgsFileWidget.GetFile)
        self.exe.setFilePath(get("executable"))
        self.exe.lineEdit().setPlaceholderText("empty: shipseg on PATH; or an environment folder")
        form.addRow("shipseg executable or environment", self.exe)
        self.model = QgsFileWidget()
        self.model.setFilter("Model bundles (*.safetensors)")
        self.model.setFilePath(get("model"))
        self.model.lineEdit().setPlaceholderText("empty: the model shipped with shipseg")
        form.addRow("Default model", self.model)
        self.device = QComboBox()
        self.device.addItems(list(runner.DEVICES))
        self.device.setCurrentText(device())
        form.addRow("Device", self.device)
        self.fmt = QComboBox()
        self.fmt.addItems(list(runner.OUTPUT_FORMATS))
        self.fmt.setCurrentText(output_format())
        form.addRow("Output format (toolbar button)", self.fmt)
        self.out_dir = QgsFileWidget()
        self.out_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.out_dir.setFilePath(get("output_dir"))
        self.out_dir.lineEdit().setPlaceholderText("empty: beside the raster, else the temporary folder")
        form.addRow("Output folder (toolbar button)", self.out_dir)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        test = QPushButton("Check shipseg")
        test.clicked.connect(self.check)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(test)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def check(self):
        try:
            exe = runner.resolve_executable(self.exe.filePath())
            self.status.setText(f"{exe}: {runner.version(exe)}")
        except runner.ShipsegError as exc:
            self.status.setText(str(exc))

    def accept(self):
        set("executable", self.exe.filePath())
        set("model", self.model.filePath())
        set("device", self.device.currentText())
        set("output_format", self.fmt.currentText())
        set("output_dir", self.out_dir.filePath())
        super().accept()
