"""The client: reads blocks straight from the owning workers."""
