"""Run inside the real QGIS desktop with `qgis --code desktop_script.py` (see test_desktop.py).

Plays what a user does, step by step, saving screenshots of the whole screen (SHIPSEG_DESKTOP_SHOTS) and what it
saw in a JSON result (SHIPSEG_DESKTOP_RESULT):
  settings   the Settings dialog and its "Check shipseg", which runs in the background
  notfound   the button with no usable shipseg: the warning and its "Open settings" button
  dialog     the button with the fake shipseg: the run dialog, then its "Detect ships" button
  started    the start message, shown at once
  result     the ships layer above the raster, the result message on top of the bar
  processing the Processing algorithm's output as QGIS loads it (name, style)
  cancel     a slow run cancelled from its message: worded as a cancel, no "Task failed"
  quit       a slow run, and QGIS told to quit while it runs: the exit status is the test's verdict
SHIPSEG_DESKTOP_STEPS (comma-separated names) plays only those, then quits. Any exception or the timeout writes
the result and exits with status 1.
"""

import json
import os
import time
import traceback

from qgis.core import QgsApplication, QgsProject, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import QAction, QDialogButtonBox, QPushButton, QToolButton
from qgis.utils import active_plugins, iface, plugins

SCENE = os.environ["SHIPSEG_DESKTOP_SCENE"]
RESULT = os.environ["SHIPSEG_DESKTOP_RESULT"]
SHOTS = os.environ["SHIPSEG_DESKTOP_SHOTS"]
PIDFILE = os.environ["FAKE_SHIPSEG_PIDFILE"]
TIMEOUT_S = float(os.environ.get("SHIPSEG_DESKTOP_TIMEOUT", "150"))
T0 = time.monotonic()
state = {"active_plugins": list(active_plugins), "steps": []}
_keep = []  # Python references for timers


def plugin():
    return plugins["shipseg_qgis"]


def shot(name):
    path = os.path.join(SHOTS, f"{name}.png")
    QGuiApplication.primaryScreen().grabWindow(0).save(path)
    state.setdefault("shots", []).append(path)


def bar_items():
    return [{"title": i.title(), "text": i.text(), "level": int(i.level())} for i in iface.messageBar().items()]


def current_text():
    item = iface.messageBar().currentItem()
    return item.text() if item is not None else ""


def write_result(code):
    state["exit_code"] = code
    state["seconds"] = round(time.monotonic() - T0, 1)
    with open(RESULT, "w") as fh:
        json.dump(state, fh, indent=1)


def quit_qgis(code):
    """No layers (and no render jobs) left when QGIS shuts down."""
    for timer in _keep:
        timer.stop()
    iface.mapCanvas().stopRendering()
    QgsProject.instance().clear()
    QTimer.singleShot(500, lambda: QgsApplication.exit(code))


def fail(message):
    state["error"] = message
    write_result(1)
    quit_qgis(1)


def click_run_dialog_ok():
    dialog = plugin().run_dialog
    assert dialog is not None and dialog.isVisible(), "the button opened no run dialog"
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok).click()


def message_button(text_part, label):
    for item in iface.messageBar().items():
        if text_part in item.text():
            for button in item.findChildren(QPushButton):
                if button.text() == label:
                    return button
    raise AssertionError(f"no {label!r} button on a message with {text_part!r}: {bar_items()}")


def slow_runs():
    os.environ.update(FAKE_SHIPSEG_TILES="400", FAKE_SHIPSEG_DELAY="0.5")
    if os.path.exists(PIDFILE):
        os.remove(PIDFILE)


# --- the steps: each is called every 250 ms until it returns True -------------------------------------------------

def setup():
    """The window on the whole screen (no window manager), the scene as the active layer."""
    iface.mainWindow().setGeometry(QGuiApplication.primaryScreen().availableGeometry())
    raster = iface.addRasterLayer(SCENE, "harbour")
    assert raster is not None and raster.isValid(), f"cannot open {SCENE}"
    iface.setActiveLayer(raster)
    progress["ctx"]["raster"] = raster
    state["raster_crs"] = raster.crs().authid()
    action = iface.mainWindow().findChild(QAction, "shipsegDetectShips")
    assert action is not None, "no 'Detect ships' action in the main window (plugin not loaded?)"
    state["toolbar_button"] = any(b.defaultAction() is action for b in iface.mainWindow().findChildren(QToolButton))


def step_settings(ctx):
    if "dialog" not in ctx:
        from shipseg_qgis.settings import SettingsDialog
        os.environ["FAKE_SHIPSEG_VERSION_DELAY"] = "1"
        ctx["dialog"] = dialog = SettingsDialog(iface.mainWindow())
        dialog.show()
        dialog.check()
        state["settings_check_returned_early"] = dialog.checked is None  # --version still running
        state["settings_checking_text"] = dialog.status.text()
        return False
    dialog = ctx["dialog"]
    if dialog.checked is None:
        return False
    state["settings_checked"] = dialog.checked
    state["settings_text"] = dialog.status.text()
    state["settings_size"] = [dialog.width(), dialog.height()]
    shot("desktop_settings")
    dialog.reject()
    os.environ.pop("FAKE_SHIPSEG_VERSION_DELAY")
    return True


def step_notfound(ctx):
    if "clicked" not in ctx:
        action = iface.mainWindow().findChild(QAction, "shipsegDetectShips")
        ctx["exe"] = QgsSettings().value("shipseg/executable")
        QgsSettings().setValue("shipseg/executable", "/nonexistent/shipseg")
        action.trigger()
        click_run_dialog_ok()
        ctx["clicked"] = True
        return False
    state["notfound_text"] = current_text()
    state["notfound_button"] = bool(message_button("make install", "Open settings"))
    shot("desktop_notfound")
    iface.messageBar().clearWidgets()
    QgsSettings().setValue("shipseg/executable", ctx["exe"])
    return True


def step_dialog(ctx):
    if "opened" not in ctx:
        iface.mainWindow().findChild(QAction, "shipsegDetectShips").trigger()
        ctx["opened"] = True
        return False  # one tick for the dialog to be drawn
    shot("desktop_run_dialog")
    before = plugin().last_task
    click_run_dialog_ok()
    assert plugin().last_task is not before, "OK started no task"
    ctx["first_task"] = plugin().last_task
    state["started_text"] = current_text()  # right after the click, before any event loop turn
    return True


def step_started(ctx):
    if "waited" not in ctx:  # one more tick: the X server repaints where the closed dialog was
        ctx["waited"] = True
        return False
    shot("desktop_started")
    return True


def step_result(ctx):
    ships = [lyr for lyr in QgsProject.instance().mapLayers().values()
             if isinstance(lyr, QgsVectorLayer) and lyr.name().endswith(" ships")]
    if not ships:
        return False
    if "zoomed" not in ctx:
        layer = ships[0]
        task = ctx["first_task"]
        state.update(layer_name=layer.name(), features=layer.featureCount(), layer_crs=layer.crs().authid(),
                     reported=(task.done or {}).get("ships"), labels=layer.labelsEnabled())
        state["layer_order"] = [n.layer().name() for n in QgsProject.instance().layerTreeRoot().findLayers()]
        canvas = iface.mapCanvas()
        canvas.setExtent(layer.extent().buffered(layer.extent().width() * 0.05))
        canvas.refreshAllLayers()
        ctx["zoomed"] = time.monotonic()
        return False
    if iface.mapCanvas().isDrawing():
        return False
    state["result_text"] = current_text()
    state["result_bar"] = bar_items()
    shot("desktop_ships")
    iface.mapCanvas().saveAsImage(os.path.join(SHOTS, "desktop_ships_canvas.png"))
    return True


def step_processing(ctx):
    import processing
    before = set(QgsProject.instance().mapLayers())
    processing.runAndLoadResults("shipseg:detectships", {"INPUT": ctx["raster"], "OUTPUT": "TEMPORARY_OUTPUT"})
    new = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    assert len(new) == 1, f"Processing loaded {len(new)} layers"
    layer = new[0]
    symbol = layer.renderer().symbol() if hasattr(layer.renderer(), "symbol") else None
    state["processing"] = {"name": layer.name(), "features": layer.featureCount(), "labels": layer.labelsEnabled(),
                           "stroke": symbol.symbolLayer(0).strokeColor().name() if symbol else None}
    QgsProject.instance().removeMapLayer(layer.id())
    return True


def slow_run_going(ctx):
    """Start a slow run (once); True once its shipseg process reports progress."""
    if "task" not in ctx:
        slow_runs()
        iface.mainWindow().findChild(QAction, "shipsegDetectShips").trigger()
        click_run_dialog_ok()
        ctx["task"] = plugin().last_task
        return False
    return os.path.exists(PIDFILE) and ctx["task"].progress() > 0


def step_cancel(ctx):
    task = ctx.get("task")
    if "cancelled" not in ctx:
        if not slow_run_going(ctx):
            return False
        message_button("Detecting ships", "Cancel").click()
        ctx["cancelled"] = time.monotonic()
        return False
    if not task.ended:
        return False
    state["cancel_seconds"] = round(time.monotonic() - ctx["cancelled"], 1)
    state["cancel_text"] = current_text()
    state["cancel_bar"] = bar_items()
    shot("desktop_cancelled")
    return True


def step_quit(ctx):
    if not slow_run_going(ctx):
        return False
    state["quit_pid"] = json.loads(open(PIDFILE).read())["pid"]
    write_result(0)
    quit_qgis(0)  # with the run going: the plugin must stop it, and QGIS must exit cleanly
    return True


SHARED = ("raster", "first_task")  # what later steps use of earlier ones
ALL_STEPS = [step_settings, step_notfound, step_dialog, step_started, step_result, step_processing, step_cancel, step_quit]
WANTED = os.environ.get("SHIPSEG_DESKTOP_STEPS", "").split(",")  # a subset (a screenshot for the docs), or all
STEPS = [step for step in ALL_STEPS if step.__name__[5:] in WANTED] if any(WANTED) else ALL_STEPS
progress = {"index": 0, "ctx": {}}


def tick():
    try:
        if time.monotonic() - T0 > TIMEOUT_S:
            return fail(f"timed out in {STEPS[progress['index']].__name__}")
        if progress["index"] == len(STEPS):  # all done, and none of them quit QGIS
            write_result(0)
            quit_qgis(0)
        else:
            step = STEPS[progress["index"]]
            if step(progress["ctx"]):
                state["steps"].append(step.__name__[5:])
                progress["index"] += 1
                progress["ctx"] = {k: v for k, v in progress["ctx"].items() if k in SHARED}
    except Exception:
        fail(traceback.format_exc())


def start():
    try:
        setup()
        timer.start()
    except Exception:
        fail(traceback.format_exc())


timer = QTimer()
timer.setInterval(250)
timer.timeout.connect(tick)
_keep.append(timer)
QTimer.singleShot(500, start)
