"""The `shipseg` command line: argument parsing and printing only; the work is in samgeo_ship."""
