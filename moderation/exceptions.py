"""Domain errors that carry the name of the offending input field."""

from __future__ import annotations


class InvalidField(ValueError):
    """A submitted field is missing, malformed or out of bounds."""

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


class NotFound(LookupError):
    """A referenced object does not exist (or is not visible to the caller)."""

    def __init__(self, message: str, field: str | None = None, code: str = "not_found") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class Forbidden(PermissionError):
    """The caller may not perform this action."""

    def __init__(self, message: str, code: str = "forbidden", field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
