"""How a ships layer looks: coloured outlines and a label with each ship's length in metres."""

from qgis.core import (QgsFillSymbol, QgsPalLayerSettings, QgsSingleSymbolRenderer, QgsTextBufferSettings,
                       QgsTextFormat, QgsVectorLayer, QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor, QFont

OUTLINE = "#ff00ff"
LABEL_EXPRESSION = "format_number(\"length_m\", 0) || ' m'"


def style_ships(layer: QgsVectorLayer) -> None:
    symbol = QgsFillSymbol.createSimple({"color": "255,0,255,40", "outline_color": OUTLINE,
                                         "outline_width": "0.6", "outline_width_unit": "MM"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    if layer.fields().indexOf("length_m") >= 0:
        pal = QgsPalLayerSettings()
        pal.fieldName = LABEL_EXPRESSION
        pal.isExpression = True
        pal.placement = QgsPalLayerSettings.AroundPoint  # beside the hull, not over it
        pal.dist = 1.5
        fmt = QgsTextFormat()
        fmt.setFont(QFont("Sans", 8))
        fmt.setSize(8)
        fmt.setColor(QColor("white"))
        buf = QgsTextBufferSettings()
        buf.setEnabled(True)
        buf.setSize(0.8)
        buf.setColor(QColor("black"))
        fmt.setBuffer(buf)
        pal.setFormat(fmt)
        layer.setLabeling(QgsVectorLayerSimpleLabeling(pal))
        layer.setLabelsEnabled(True)
    layer.triggerRepaint()
