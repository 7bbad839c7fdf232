"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class SdsimError(Exception):
    """An input or usage error the user can fix; the message names the file, field or tensor at fault."""

    exit_code = 2
