"""The tool's own errors: one clear line for the user, no traceback."""

from __future__ import annotations

import os


class DiscourseError(Exception):
    """A problem with the user's input: shown as one line, exit status 2.

    ``path`` names the file (or other thing) at fault; ``message`` says what is
    wrong and, where possible, what to do.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
