"""User-facing errors: one clear sentence, shown as-is by the app and the CLI."""


class SegLoopError(Exception):
    """A problem with the user's input or environment that they can act on."""


class ScanError(SegLoopError):
    """A scan or label file that cannot be used (corrupt, wrong shape, bad values...)."""


class ModelError(SegLoopError):
    """A model that cannot be loaded or does not fit the scan."""
