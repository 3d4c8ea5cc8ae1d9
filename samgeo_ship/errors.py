"""The one exception class users see: bad input, reported as one sentence naming the file."""


class ShipsegError(Exception):
    """Bad input or an unusable file. The CLI prints the message on one line and exits with code 2."""


def fail(path, problem: str) -> "ShipsegError":
    """Build the error for ``path`` with a one-line ``problem`` (returned, so callers write ``raise fail(...)``)."""
    return ShipsegError(f"{path}: {problem}")
