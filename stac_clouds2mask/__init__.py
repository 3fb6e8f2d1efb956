"""STAC-native cloud and cloud-shadow masks for Sentinel-2."""
