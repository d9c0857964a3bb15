"""The error type for problems with the user's input or files."""


class UserError(Exception):
    """Bad input, named precisely: the CLI prints it as one line and exits 2.

    The message should start with the file or option at fault and say what
    is wrong with it, e.g. ``low/a.tif: not a TIFF file``.
    """
