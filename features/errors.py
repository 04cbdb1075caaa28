"""The one error type people see: a message that says what was expected, what was found and where."""

from __future__ import annotations

__all__ = ["NotFoundError", "SalesmlError"]


class SalesmlError(ValueError):
    """Bad input (a file, a spec, an option, a request). The CLI prints it and exits 2."""


class NotFoundError(SalesmlError):
    """A well-formed name (a node, a level) that the served data does not hold; the service answers 404."""
