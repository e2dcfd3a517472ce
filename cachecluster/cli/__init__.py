"""The cachecluster command line."""
