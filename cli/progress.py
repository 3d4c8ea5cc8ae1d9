"""Progress display shared by the commands: a tqdm bar on stderr, or nothing with --quiet."""

import contextlib

from tqdm import tqdm


@contextlib.contextmanager
def progress_bar(unit: str, quiet: bool):
    """Yield ``update(done, total)`` driving a progress bar (a no-op when ``quiet``)."""
    if quiet:
        yield lambda done, total: None
        return
    bar = tqdm(unit=f" {unit}", dynamic_ncols=True, leave=False)

    def update(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
