"""Under file systems: one interface (base.py), one file a backend, a registry by scheme."""
