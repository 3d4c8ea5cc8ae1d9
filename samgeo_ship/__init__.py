"""shipseg: find ships in aerial and satellite imagery with Segment Anything."""

from samgeo_ship.version import __version__  # noqa: F401

# Bundle kinds defined above models register themselves on import (samgeo_ship.models.bundle.BUNDLE_KINDS), so that
# every program that imports samgeo_ship loads every kind of bundle.
from samgeo_ship.oneshot import proposer as _oneshot_proposer  # noqa: F401
