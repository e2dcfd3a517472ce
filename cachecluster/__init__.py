"""cachecluster: a distributed dataset cache for OSS, S3 and local datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cachecluster.fuse.notebook import list_mounts, mount, unmount

__all__ = ["list_mounts", "mount", "unmount"]

_LAZY = {"mount", "unmount", "list_mounts"}


def __getattr__(name: str) -> Any:
    """``mount``, ``unmount``, ``list_mounts`` load on first use (no FUSE import otherwise)."""
    if name in _LAZY:
        from cachecluster.fuse import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'cachecluster' has no attribute {name!r}")
