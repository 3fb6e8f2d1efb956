"""STAC-native cloud and cloud-shadow masks for Sentinel-2."""

__version__ = "0.1.0"
