"""Imports every method module so that their ``@DISTILLERS.register`` lines run."""

from . import hints, response, review  # noqa: F401
