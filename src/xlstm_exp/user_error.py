"""The error of a mistake the user can fix (a config value, a path, a file): entry points print
its message as one line, `error: <message>`, and exit with status 2 instead of a traceback.

It depends on nothing, so the plain-PyTorch models and the data modules can raise it too."""


class UserError(ValueError):
    """A mistake in what the user asked for. The message names the key and its value and says
    how to fix it; it is kept on one line, since it is printed as one. A ValueError, as a wrong
    value is, so callers that catch ValueError still catch it."""

    def __init__(self, message: str) -> None:
        # Wrapped library errors (from `datasets`, PyTorch) may span several lines.
        super().__init__(" ".join(line.strip() for line in message.splitlines() if line.strip()))
