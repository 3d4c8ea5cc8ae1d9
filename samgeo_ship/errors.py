"""The one exception class users see: bad input, reported as one sentence naming the file. Its subclasses name the
problems callers handle rather than report, so that they test the type, never the wording."""


class ShipsegError(Exception):
    """Bad input or an unusable file. The CLI prints the message on one line and exits with code 2."""


class NoValidPixels(ShipsegError):
    """The raster holds no valid pixels (everything is nodata): nothing to normalise, train on or find ships in."""


class NoSuchBand(ShipsegError):
    """The raster has no band of the name or number asked for."""


def fail(path, problem: str) -> "ShipsegError":
    """Build the error for ``path`` with a one-line ``problem`` (returned, so callers write ``raise fail(...)``)."""
    return ShipsegError(f"{path}: {problem}")


class NoSuchBand(ShipsegError):
    """The raster has no band of a requested name or number."""
