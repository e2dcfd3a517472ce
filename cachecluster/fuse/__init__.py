"""FUSE: a thin pyfuse3 adapter over the client."""
