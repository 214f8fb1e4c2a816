"""The package's version: one line, read by the build (hatch) and imported by the rest."""

__version__ = "0.1.0"
