"""The base of errors a user can fix; the CLI prints their message as one line, no traceback."""


class SkyDistillError(Exception):
    """Bad config, missing or malformed input, an unknown name: something the user can fix."""


class MissingInputError(SkyDistillError, FileNotFoundError):
    """A stage's input is absent: usually an earlier stage has not run or not completed."""
