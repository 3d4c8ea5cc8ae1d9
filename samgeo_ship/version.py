"""The version of shipseg, in a module of its own so that any layer can name it without importing the package's
public face (samgeo_ship/__init__.py imports the feature packages)."""

__version__ = "0.1.0"
