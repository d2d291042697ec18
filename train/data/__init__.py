"""Data for the trainer: loaders, preprocessing, splits, healthy hosts, sample fetch."""

from .case import Case

__all__ = ["Case"]
