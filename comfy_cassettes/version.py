"""The package version, read by the package, the OpenAPI document and the build (pyproject: dynamic version)."""

__version__ = "0.1.0"
