"""The one exception type that the CLI turns into a one-line message and an exit code."""


class UserError(Exception):
    """Bad input or a failed external step the user can act on: printed, never a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
