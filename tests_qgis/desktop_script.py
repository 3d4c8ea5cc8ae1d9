"""Run inside the real QGIS desktop with `qgis --code desktop_script.py` (see test_desktop.py).

Adds the scene as a raster layer, clicks the plugin's "Detect ships" action, waits for the ships layer, saves a
screenshot of the map canvas and of the main window, writes a JSON result and quits QGIS with exit status 0
(1 on any failure or after the timeout).
"""

import json
import os
import time
import traceback

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QAction, QToolButton
from qgis.utils import active_plugins, iface

SCENE = os.environ["SHIPSEG_DESKTOP_SCENE"]
RESULT = os.environ["SHIPSEG_DESKTOP_RESULT"]
SHOT = os.environ["SHIPSEG_DESKTOP_SHOT"]
TIMEOUT_S = float(os.environ.get("SHIPSEG_DESKTOP_TIMEOUT", "150"))
T0 = time.monotonic()
state = {"active_plugins": list(active_plugins), "steps": []}
_keep = []  # Python references for timers and slots


def finish(code: int):
    state["exit_code"] = code
    state["seconds"] = round(time.monotonic() - T0, 1)
    with open(RESULT, "w") as fh:
        json.dump(state, fh, indent=1)
    for timer in _keep:
        timer.stop()
    iface.mapCanvas().stopRendering()
    QgsProject.instance().clear()  # no layers (and no render jobs) left when QGIS shuts down
    QTimer.singleShot(800, lambda: QgsApplication.exit(code))


def guarded(fn):
    def wrapper(*args):
        try:
            fn(*args)
        except Exception:
            state["error"] = traceback.format_exc()
            finish(1)
    return wrapper


@guarded
def start():
    state["steps"].append("start")
    raster = iface.addRasterLayer(SCENE, "harbour")
    assert raster is not None and raster.isValid(), f"cannot open {SCENE}"
    iface.setActiveLayer(raster)
    state["raster_crs"] = raster.crs().authid()
    action = iface.mainWindow().findChild(QAction, "shipsegDetectShips")
    assert action is not None, "no 'Detect ships' action in the main window (plugin not loaded?)"
    buttons = [b for b in iface.mainWindow().findChildren(QToolButton) if b.defaultAction() is action]
    state["toolbar_button"] = bool(buttons)
    state["steps"].append("click")
    action.trigger()
    poll = QTimer()
    poll.setInterval(250)
    poll.timeout.connect(lambda: check(poll, raster))
    poll.start()
    _keep.append(poll)


@guarded
def check(poll, raster):
    ships = [lyr for lyr in QgsProject.instance().mapLayers().values()
             if isinstance(lyr, QgsVectorLayer) and lyr.name().endswith(" ships")]
    if not ships:
        if time.monotonic() - T0 > TIMEOUT_S:
            poll.stop()
            state["error"] = "timed out waiting for the ships layer; messages in the log panel"
            finish(1)
        return
    poll.stop()
    layer = ships[0]
    plugin = __import__("qgis.utils").utils.plugins["shipseg_qgis"]
    state.update(layer_name=layer.name(), features=layer.featureCount(), layer_crs=layer.crs().authid(),
                 reported=(plugin.last_task.done or {}).get("ships"), labels=layer.labelsEnabled())
    state["layer_order"] = [node.layer().name() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    canvas = iface.mapCanvas()
    canvas.setExtent(layer.extent().buffered(layer.extent().width() * 0.05))
    canvas.mapCanvasRefreshed.connect(on_refreshed)
    canvas.refreshAllLayers()


def on_refreshed():
    iface.mapCanvas().mapCanvasRefreshed.disconnect(on_refreshed)  # no Python slot left on the canvas at exit
    QTimer.singleShot(100, lambda: save(iface.mapCanvas()))


@guarded
def save(canvas):
    if "saved" in state:
        return
    state["saved"] = True
    canvas.saveAsImage(SHOT)
    iface.mainWindow().grab().save(SHOT.replace(".png", "_window.png"))
    state["steps"].append("screenshot")
    finish(0)


QTimer.singleShot(500, start)
watchdog = QTimer()
watchdog.setSingleShot(True)
watchdog.timeout.connect(lambda: (state.setdefault("error", "watchdog"), finish(1)))
watchdog.start(int((TIMEOUT_S + 30) * 1000))
_keep.append(watchdog)
