"""User-facing errors: one clear sentence, shown as-is by the app and the CLI."""


class SegLoopError(Exception):
    """A problem with the user's input or environment that they can act on.

    The app and the CLI catch it and show its message as-is, instead of a traceback.

    Parameters
    ----------
    message : str
        One clear sentence saying what is wrong (and, where possible, what to do about it).
    """


class ScanError(SegLoopError):
    """A scan or label file that cannot be used (corrupt, wrong shape, bad values...).

    Parameters
    ----------
    message : str
        One sentence naming the file and what is wrong with it.
    """


class ModelError(SegLoopError):
    """A model that cannot be loaded or does not fit the scan.

    Also raised for registry problems: a missing model or checkpoint file, no active model to
    fine-tune, nothing to roll back to.

    Parameters
    ----------
    message : str
        One sentence naming the model and what is wrong.
    """


class PermissionDenied(SegLoopError):
    """The acting person's role does not allow what they asked for (see `segloop.store.identity`).

    Raised by the core itself, whatever page or command asked: a page hiding a button is not the only gate.

    Parameters
    ----------
    message : str
        One sentence naming who, what they tried, and which role it needs.
    """
