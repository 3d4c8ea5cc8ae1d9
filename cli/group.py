"""The Click group class every `shipseg` group uses: bad input becomes one line on stderr and exit code 2."""

import contextlib
import logging
import sys
import warnings

import click

from samgeo_ship.errors import ShipsegError

# Libraries that log their own warnings (GDAL through rasterio, OGR through pyogrio) print them before our one
# line when a file is bad ("not a TIFF", "NaN coordinates"); the error says what matters, once.
QUIET_LOGGERS = ("rasterio", "pyogrio", "fiona")


def is_ours(category) -> bool:
    """Whether a warning category is shipseg's own (worth a line), not a library's."""
    return category.__module__.startswith("samgeo_ship")


def _show(message, category, *args, **kwargs):
    if is_ours(category):
        click.echo(f"Warning: {message}", err=True)


@contextlib.contextmanager
def one_line_warnings():
    """Show shipseg's own warnings (e.g. resolution, undeclared fill) as one 'Warning: ...' line on stderr; those of
    the libraries below (GDAL's "no geotransform", numpy's "invalid value") are noise around a one-line error.

    Yields ``release()``: warnings are held until it is called (at the first progress report) or the block ends
    without error, so input refused before any work is done prints its error line alone. Each message is shown
    once (the scene statistics behind a warning may be computed again)."""
    held, shown = [], set()

    def show(message, category, *args, **kwargs):
        if is_ours(category) and str(message) not in shown:
            shown.add(str(message))
            if held is None:
                click.echo(f"Warning: {message}", err=True)
            else:
                held.append(message)

    def release():
        nonlocal held
        for message in held or ():
            click.echo(f"Warning: {message}", err=True)
        held = None

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield release
        release()


class ShipsegGroup(click.Group):
    """Turns a ShipsegError raised anywhere below into ``Error: <message>`` on stderr and exit code 2 (also when
    a sub-group such as ``weights`` runs on its own, as in tests), and so does a bad parameter such as a folder
    given where a file is expected (Click would print its usage text around it). Warnings are shown as one
    'Warning: ...' line, shipseg's own only."""

    def invoke(self, ctx):
        for name in QUIET_LOGGERS:
            logging.getLogger(name).addHandler(logging.NullHandler())
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show
                return super().invoke(ctx)
        except ShipsegError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except click.BadParameter as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(2)
