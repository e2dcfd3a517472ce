"""UFS backends by URI scheme, imported lazily so that an SDK loads only when used.

The registry maps a scheme to ``"module:Class"``; :func:`create_backend` imports
the module on first use. ``oss://`` needs ``oss2`` and ``s3://`` needs ``boto3``,
but a process that only opens ``local://`` (a client, the CLI) never imports either.

A UFS URI names a scheme, a root and a prefix under that root:

========================== ======== =============== ===========
URI                        scheme   root            prefix
========================== ======== =============== ===========
``s3://bucket/dir/sub``    s3       ``bucket``      ``dir/sub``
``oss://bucket``           oss      ``bucket``      ``""``
``local:///mnt/data``      local    ``/mnt/data``   ``""``
``file:///mnt/data``       file     ``/mnt/data``   ``""``
========================== ======== =============== ===========

A long-running process that will open backends soon (a worker, a master) calls
:func:`start_preload` at start: a background thread imports every registered
backend's module and warms it up (:meth:`UfsBackend.warm_up`), so that the
first read of a mount does not wait for an SDK import (about 0.2 s for boto3).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from cachecluster.common.errors import InvalidPath, UfsError, UnknownScheme
from cachecluster.common.paths import normalize_path
from cachecluster.ufs.base import UfsBackend

log = logging.getLogger(__name__)

# scheme -> "module:Class", and the package that module needs (for the install hint).
_TARGETS: dict[str, str] = {
    "file": "cachecluster.ufs.local:LocalBackend",
    "local": "cachecluster.ufs.local:LocalBackend",
    "oss": "cachecluster.ufs.oss:OssBackend",
    "s3": "cachecluster.ufs.s3:S3Backend",
}
_INSTALL_HINTS: dict[str, str] = {"oss": "oss2", "s3": "boto3"}
_FILESYSTEM_SCHEMES = frozenset({"file", "local"})

_loaded: dict[str, type[UfsBackend]] = {}
_lock = threading.Lock()


class UfsLocation(NamedTuple):
    """A UFS URI split into its parts (see the module docstring)."""

    scheme: str
    root: str
    """The bucket for object stores; the absolute directory for ``local``/``file``."""
    prefix: str
    """The normalised path under ``root`` (no leading or trailing slash; may be empty)."""


def supported_schemes() -> tuple[str, ...]:
    """The schemes a backend is registered for, sorted."""
    return tuple(sorted(_TARGETS))


def register(scheme: str, target: str | type[UfsBackend], *, replace: bool = False) -> None:
    """Serve ``scheme`` with ``target``: a class, or ``"module:Class"`` imported on first use.

    Registering a scheme that is already taken raises ``ValueError`` unless
    ``replace`` is true.
    """
    scheme = scheme.lower()
    with _lock:
        if scheme in _TARGETS and not replace:
            raise ValueError(f"UFS scheme {scheme!r} is already registered to {_TARGETS[scheme]}")
        if isinstance(target, str):
            if ":" not in target:
                raise ValueError(f"UFS backend target {target!r} must look like 'module:Class'")
            _TARGETS[scheme] = target
            _loaded.pop(scheme, None)
        else:
            _TARGETS[scheme] = f"{target.__module__}:{target.__qualname__}"
            _loaded[scheme] = target


def scheme_of(uri: str) -> str:
    """The lower-case scheme of ``uri`` (``""`` when it has none)."""
    head, sep, _ = uri.partition("://")
    return head.lower() if sep else ""


def _unknown_scheme(scheme: str, uri: str) -> UnknownScheme:
    supported = ", ".join(supported_schemes())
    if not scheme:
        return UnknownScheme(f"UFS URI {uri!r} has no scheme (supported: {supported})")
    return UnknownScheme(f"unknown UFS scheme {scheme!r} in {uri!r} (supported: {supported})")


def backend_class(scheme: str) -> type[UfsBackend]:
    """The backend class serving ``scheme``, importing its module on first use."""
    scheme = scheme.lower()
    with _lock:
        cls = _loaded.get(scheme)
        if cls is not None:
            return cls
        target = _TARGETS.get(scheme)
    if target is None:
        raise _unknown_scheme(scheme, f"{scheme}://")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = _INSTALL_HINTS.get(scheme, module_name)
        raise UfsError(
            f"UFS scheme {scheme!r} needs the {package!r} package, which failed to import "
            f"({exc}): pip install {package}"
        ) from exc
    loaded = getattr(module, class_name)
    if not (isinstance(loaded, type) and issubclass(loaded, UfsBackend)):
        raise TypeError(f"{target} is not a UfsBackend subclass")
    with _lock:
        _loaded[scheme] = loaded
    return loaded


def split_uri(uri: str) -> UfsLocation:
    """Split ``uri`` into (scheme, root, prefix); see the module docstring.

    Raises :class:`UnknownScheme` for a scheme no backend serves and
    :class:`InvalidPath` for a malformed URI (no bucket, a relative local path,
    a ``..`` that leaves the bucket).
    """
    scheme = scheme_of(uri)
    if scheme not in _TARGETS:
        raise _unknown_scheme(scheme, uri)
    parsed = urllib.parse.urlsplit(uri)
    if parsed.query or parsed.fragment:
        raise InvalidPath(f"UFS URI {uri!r}: a query or fragment is not allowed")
    if scheme in _FILESYSTEM_SCHEMES:
        if parsed.netloc not in ("", "localhost"):
            raise InvalidPath(
                f"UFS URI {uri!r}: the path must be absolute, "
                f"as in '{scheme}:///abs/dir' (three slashes)"
            )
        rel = normalize_path(urllib.parse.unquote(parsed.path))
        return UfsLocation(scheme, "/" + rel, "")
    bucket = parsed.netloc
    if not bucket or "@" in bucket:
        raise InvalidPath(f"UFS URI {uri!r}: expected '{scheme}://bucket[/prefix]'")
    return UfsLocation(scheme, bucket, normalize_path(parsed.path))


def create_backend(uri: str, options: Mapping[str, str] | None = None) -> UfsBackend:
    """A backend serving ``uri`` configured with ``options`` (a mount's options).

    Raises :class:`UnknownScheme` with one line naming the scheme, the URI and the
    supported schemes; backends raise ``ConfigError`` for a bad option.
    """
    location = split_uri(uri)
    cls = backend_class(location.scheme)
    return cls(uri, options)


def preload(schemes: Iterable[str] | None = None) -> dict[str, str]:
    """Import and warm up the backend of each scheme (every registered one by default).

    Blocking (run it in a thread). Returns ``{scheme: reason}`` for the
    backends that could not be loaded, e.g. an optional SDK that is not
    installed; those fail again, with their install hint, when a mount uses them.
    """
    failed: dict[str, str] = {}
    classes: dict[type[UfsBackend], str] = {}  # class -> the first scheme naming it
    for scheme in supported_schemes() if schemes is None else schemes:
        try:
            classes.setdefault(backend_class(scheme), scheme)
        except Exception as error:  # e.g. UfsError: the SDK is not installed
            failed[scheme] = str(error)
    for cls, scheme in classes.items():  # "file" and "local" share one class
        try:
            cls.warm_up()
        except Exception as error:  # a warm-up is an optimisation, never a failure
            failed[scheme] = f"warm-up failed: {error}"
    return failed


def start_preload(schemes: Iterable[str] | None = None) -> threading.Thread:
    """:func:`preload` in a daemon thread (started); failures are logged at debug level."""
    wanted = None if schemes is None else tuple(schemes)

    def run() -> None:
        started = time.monotonic()
        failed = preload(wanted)
        for scheme, reason in sorted(failed.items()):
            log.debug("UFS backend %s not preloaded: %s", scheme, reason)
        log.debug("UFS backends preloaded in %.3fs", time.monotonic() - started)

    thread = threading.Thread(target=run, name="ufs-preload", daemon=True)
    thread.start()
    return thread
