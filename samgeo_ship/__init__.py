"""shipseg: find ships in aerial and satellite imagery with Segment Anything."""

__version__ = "0.1.0"
