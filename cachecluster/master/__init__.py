"""The master: membership, hash ring, datasets, metadata, DataLoad."""
