"""The one error type that user mistakes raise; the CLI turns it into one line on stderr."""


class EdgeSRError(Exception):
    """A problem the user can fix (bad input, missing dependency, wrong model...).

    ``exit_code`` follows sysexits-ish conventions: 2 usage/bad input, 3 missing dependency,
    4 hardware/device problem.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class MissingDependency(EdgeSRError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=3)


class DeviceError(EdgeSRError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=4)
