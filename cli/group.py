"""The Click group class every `shipseg` group uses: bad input becomes one line on stderr and exit code 2."""

import sys

import click

from samgeo_ship.errors import ShipsegError


class ShipsegGroup(click.Group):
    """Turns a ShipsegError raised anywhere below into ``Error: <message>`` on stderr and exit code 2 (also when
    a sub-group such as ``weights`` runs on its own, as in tests)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ShipsegError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
