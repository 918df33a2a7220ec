"""User-facing errors: each carries one line that names the problem, so front ends can print it and exit."""


class AdaconvError(Exception):
    """A problem with the user's input (a file, an argument, a weights file), not a bug.

    The command line prints ``str(error)`` on one line and exits with status 2.
    """


class WeightsError(AdaconvError):
    """A weights file is missing, damaged, or belongs to another model."""


class ImageError(AdaconvError):
    """An image cannot be read or written."""
