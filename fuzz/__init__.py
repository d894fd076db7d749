"""Fuzz targets for every reader and command family (``make fuzz``); see fuzz/README.md."""
