"""`shipseg weights`: list, download and verify the official SAM checkpoints."""

import sys

import click

from .group import ShipsegGroup
from samgeo_ship.models import weights as W


weights = ShipsegGroup("weights", help="List, download and verify the official SAM checkpoints.")


def _size(n):
    return "?" if n is None else f"{n / 1e6:,.0f} MB"


@weights.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder (default: the shipseg cache).")
def list_(cache_dir):
    """Each checkpoint: name, size, whether it is cached, and its path."""
    for name, ckpt in W.CHECKPOINTS.items():
        path = W.cached_path(name, cache_dir)
        part = path.with_name(path.name + ".part")
        if path.is_file():
            state = "cached"
        elif part.is_file():
            state = f"partial ({part.stat().st_size / 1e6:,.0f} MB)"
        else:
            state = "not cached"
        click.echo(f"{name:<6} {_size(ckpt.size_bytes):>9}  {state:<20} {path}")


@weights.command("download")
@click.argument("name", type=click.Choice(sorted(W.CHECKPOINTS)))
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder (default: the shipseg cache).")
@click.option("--url", default=None, help="Download from this mirror instead; the SHA-256 is still checked.")
@click.option("--offline", is_flag=True, default=None, help="Do not use the network (also SHIPSEG_OFFLINE=1).")
def download(name, cache_dir, url, offline):
    """Download checkpoint NAME, verify its SHA-256 and print its path (resumes an interrupted download)."""
    from tqdm import tqdm

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=0, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=name, file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        path = W.download(name, cache_dir=cache_dir, url=url, offline=offline, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(str(path))


@weights.command("verify")
@click.argument("name_or_path")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder (default: the shipseg cache).")
def verify(name_or_path, cache_dir):
    """Check the SHA-256 of a cached checkpoint (by NAME) or of a file (by PATH); exit 0 if it is good, 2 if not."""
    W.verify(name_or_path, cache_dir=cache_dir)
    click.echo(f"{name_or_path}: OK")
