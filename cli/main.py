"""Entry point of the `shipseg` command: the Click group and the list of its commands."""

import click

from samgeo_ship import __version__

from . import batch as batch_cmd
from . import calibrate as calibrate_cmd
from . import detect as detect_cmd
from . import evaluate as evaluate_cmd
from . import info as info_cmd
from . import models as models_cmd
from . import oneshot as oneshot_cmd
from . import prepare as prepare_cmd
from . import synth as synth_cmd
from . import train as train_cmd
from . import weights as weights_cmd
from .group import ShipsegGroup


@click.group(cls=ShipsegGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shipseg")
def cli():
    """Find ships in aerial and satellite imagery with Segment Anything."""


# Each command lives in its own module under cli/ and is added here, so this file is the one list of them.
for _command in (prepare_cmd.prepare, synth_cmd.synth, weights_cmd.weights, detect_cmd.detect, evaluate_cmd.evaluate,
                 calibrate_cmd.calibrate, batch_cmd.batch, train_cmd.train, oneshot_cmd.oneshot, info_cmd.info,
                 models_cmd.models):
    cli.add_command(_command)


def main():
    cli(prog_name="shipseg")


if __name__ == "__main__":
    main()
