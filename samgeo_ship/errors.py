"""The one exception class users see: bad input, reported as one sentence naming the file."""


class ShipsegError(Exception):
    """Bad input or an unusable file. The CLI prints the message on one line and exits with code 2."""


class NoValidPixels(ShipsegError):
    """The raster holds no valid pixels (everything is nodata): nothing to normalise, train on or find ships in."""


def fail(path, problem: str) -> "ShipsegError":
    """Build the error for ``path`` with a one-line ``problem`` (returned, so callers write ``raise fail(...)``)."""
    return ShipsegError(f"{path}: {problem}")


class NoSuchBand(ShipsegError):
    """The raster has no band of a requested name or number."""
