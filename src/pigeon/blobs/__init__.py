"""Blob stores: local files by default, S3-compatible object storage at scale."""
