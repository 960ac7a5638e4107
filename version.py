"""The package version, in a module of its own so that any part of polyvision can read it
without importing the public API (which imports the models)."""
__version__ = "0.2.0"
