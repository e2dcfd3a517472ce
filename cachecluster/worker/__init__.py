"""The worker: a tiered block store that reads missing blocks from the UFS."""
