"""Path normalisation: the one check that keeps readers inside their root."""

from __future__ import annotations

import posixpath

from cachecluster.common.errors import InvalidPath


def normalize_path(path: str) -> str:
    """Return ``path`` relative to its root, in posix form, without a leading slash.

    ``""``, ``"/"`` and ``"."`` are the root (``""``). A ``..`` that would leave
    the root, a NUL byte or a backslash is refused with :class:`InvalidPath`.
    """
    if "\x00" in path:
        raise InvalidPath(f"path {path!r}: contains a NUL byte")
    if "\\" in path:
        raise InvalidPath(f"path {path!r}: backslashes are not allowed")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidPath(f"path {path!r}: '..' escapes the root")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def join_path(root: str, path: str) -> str:
    """Join a normalised ``path`` under ``root`` (both posix, no escape possible)."""
    rel = normalize_path(path)
    if not root:
        return rel
    return posixpath.join(root, rel) if rel else root
