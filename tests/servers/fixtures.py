"""pytest fixtures for the servers tests need (filled in by the UFS work)."""
