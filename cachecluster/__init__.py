"""cachecluster: a distributed dataset cache for OSS, S3 and local datasets."""

__version__ = "0.1.0"
