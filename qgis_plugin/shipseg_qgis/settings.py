"""The plugin's settings (QgsSettings under ``shipseg/``) and the small dialog that edits the global ones."""

from __future__ import annotations

from qgis.core import QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, QTimer
from qgis.PyQt.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                                 QLineEdit, QPushButton, QVBoxLayout)

from . import runner

KEY = "shipseg/"
# executable, model, device: the Settings dialog; the rest: the last choices in the run dialog.
DEFAULTS = {"executable": "", "model": "", "device": "auto", "output_format": "gpkg", "output_dir": "",
            "last_model": "", "bands": "", "prompts": "", "selected_only": "false"}
CHECK_TIMEOUT_S = 120  # the first start of a fresh environment imports torch from a cold disk


def get(name: str) -> str:
    value = QgsSettings().value(KEY + name, DEFAULTS[name])
    return "" if value is None else str(value)


def set(name: str, value) -> None:  # noqa: A001 - mirrors QgsSettings
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


def fit_placeholder(edit: QLineEdit, text: str) -> None:
    """Show ``text`` as ``edit``'s placeholder, uncut whatever the font."""
    edit.setPlaceholderText(text)
    edit.setMinimumWidth(edit.fontMetrics().horizontalAdvance(text) + 3 * edit.fontMetrics().height())


class ExecutablePicker(QLineEdit):
    """A path field with two buttons: the shipseg executable itself, or the environment folder holding it."""

    def __init__(self, path: str, parent=None):
        super().__init__(path, parent)
        fit_placeholder(self, "empty: shipseg on PATH")
        self.row = QHBoxLayout()
        self.row.addWidget(self)
        for text, pick in (("File…", self._pick_file), ("Folder…", self._pick_folder)):
            button = QPushButton(text)
            button.clicked.connect(pick)
            self.row.addWidget(button)

    def _pick_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "The shipseg executable", self.text())
        if path:
            self.setText(path)

    def _pick_folder(self):
        path = QFileDialog.getExistingDirectory(self, "The environment shipseg is installed in (e.g. <clone>/.venv)",
                                                self.text())
        if path:
            self.setText(path)


class SettingsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Shipseg settings")
        self.setMinimumWidth(820)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.exe = ExecutablePicker(get("executable"))
        form.addRow("shipseg executable or environment folder", self.exe.row)
        self.model = QgsFileWidget()
        self.model.setFilter("Models (*.safetensors *.pth)")
        self.model.setFilePath(get("model"))
        fit_placeholder(self.model.lineEdit(), "empty: the model shipped with shipseg")
        form.addRow("Default model", self.model)
        self.device = QComboBox()
        self.device.addItems(list(runner.DEVICES))
        self.device.setCurrentText(device())
        form.addRow("Device", self.device)
        hint = QLabel("Install shipseg from a clone of its repository with <code>make install</code>, then choose "
                      "<code>&lt;clone&gt;/.venv/bin/shipseg</code> (File…) or the <code>&lt;clone&gt;/.venv</code> "
                      "folder (Folder…).")
        hint.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.check_button = QPushButton("Check shipseg")
        self.check_button.clicked.connect(self.check)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(self.check_button)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.process = None
        self.checked = None  # True/False once a check ended
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._check_timed_out)

    def check(self):
        """Start ``shipseg --version`` in the background; ``checked`` holds the outcome once it ends."""
        self.checked = None
        try:
            exe = runner.resolve_executable(self.exe.text())
        except runner.ShipsegError as exc:
            return self._show(str(exc), ok=False)
        self.process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in runner.child_env().items():
            env.insert(key, value)
        self.process.setProcessEnvironment(env)
        self.process.finished.connect(lambda code, status, p=self.process, e=exe: self._check_done(
            p, e, code if status == QProcess.NormalExit else -1))
        self.process.errorOccurred.connect(lambda err, p=self.process, e=exe: self._check_failed(p, e, err))
        self.check_button.setEnabled(False)
        self.status.setText(f"Checking {exe} …")
        self._timer.start(CHECK_TIMEOUT_S * 1000)
        self.process.start(exe, ["--version"])

    def _check_done(self, process, exe, code):
        if process is not self.process:
            return
        out = bytes(process.readAllStandardOutput()).decode("utf-8", "replace").strip().splitlines()
        err = bytes(process.readAllStandardError()).decode("utf-8", "replace").splitlines()
        if code == 0:
            self._show(f"{exe}: {out[-1] if out else 'shipseg (unknown version)'}", ok=True)
        else:
            self._show(runner.failure_message([exe], code, err), ok=False)

    def _check_failed(self, process, exe, error):
        if process is self.process and error == QProcess.FailedToStart:
            self._show(f"Could not start {exe}: {process.errorString()}. {runner.INSTALL_HINT}", ok=False)

    def _check_timed_out(self):
        if self.process is not None and self.process.state() != QProcess.NotRunning:
            self.process.kill()
            self._show(f"shipseg --version did not answer within {CHECK_TIMEOUT_S} s.", ok=False)

    def _show(self, text: str, ok: bool):
        self._timer.stop()
        self.process = None
        self.checked = ok
        self.check_button.setEnabled(True)
        self.status.setText(text)

    def done(self, result):
        if self.process is not None:  # closing while a check runs: stop it, never report into a closed dialog
            process, self.process = self.process, None
            process.kill()
            process.waitForFinished(3000)
        super().done(result)

    def accept(self):
        set("executable", self.exe.text().strip())
        set("model", self.model.filePath())
        set("device", self.device.currentText())
        super().accept()
