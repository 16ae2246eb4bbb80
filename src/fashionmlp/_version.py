"""The library's version, in a module of its own so that any layer can name it."""

__version__ = "0.2.0.dev0"
