"""The package version, in a module that imports nothing: the report and the command line print it without
importing the package root (which imports the models), and the build reads it from here (pyproject.toml)."""

__version__ = "0.1.0"
