"""Shipseg for QGIS: detect ships in the active raster with the `shipseg` command, run in its own process."""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .plugin import ShipsegPlugin
    return ShipsegPlugin(iface)
