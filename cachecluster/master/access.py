"""Who may see what: the master's access rules between namespaces.

The caller is the namespace of the call's token
(:data:`~cachecluster.master.auth_interceptor.CALLER`):

* ``None`` (open mode, no cluster secret), the admin namespace (whoever holds
  the secret file) and the system namespace (workers) see every dataset;
* any other namespace sees **only its own datasets**. It reads another
  namespace's data only through a reference dataset of its own
  (``dataset://src/name[/subpath]``): the reference's capability covers the
  source's mounts below the subpath, never the source by name.

A dataset the caller may not see is reported as **NotFound**, with the same
message as a dataset that does not exist, so that a namespace cannot probe
which datasets others have. Writing into another namespace (apply, delete),
and making a reference to another namespace's dataset, is PermissionDenied
unless the caller is the admin: a namespace token must not be able to grant
itself access to another namespace's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecluster.common.auth import ADMIN_NAMESPACE, SYSTEM_NAMESPACE, path_under
from cachecluster.common.errors import NotFound, PermissionDenied
from cachecluster.master.auth_interceptor import CALLER
from cachecluster.master.datasets import DatasetRecord, DatasetRegistry
from cachecluster.master.references import is_reference_uri, parse_reference, resolve_source

_PRIVILEGED = frozenset({ADMIN_NAMESPACE, SYSTEM_NAMESPACE})


def caller() -> str | None:
    """The current call's namespace; ``None`` in open mode."""
    return CALLER.get()


def sees_everything(namespace: str | None) -> bool:
    """Whether ``namespace`` (a caller) is unrestricted."""
    return namespace is None or namespace in _PRIVILEGED


def check_visible(namespace: str, name: str) -> None:
    """``NotFound`` (as for a missing dataset) unless the caller may see ``namespace/name``."""
    who = caller()
    if not sees_everything(who) and who != namespace:
        raise NotFound(f"no dataset {namespace}/{name}")


def visible_namespace(requested: str) -> str | None:
    """The namespace filter of a listing: ``None`` when the caller sees nothing of it.

    ``""`` asks for every namespace: a restricted caller gets its own.
    """
    who = caller()
    if sees_everything(who):
        return requested
    assert who is not None
    if requested and requested != who:
        return None
    return who


def check_writable(namespace: str, spec: Any = None) -> None:
    """Refuse (PermissionDenied) a change of another namespace, or a cross-namespace reference."""
    who = caller()
    if who is None or who == ADMIN_NAMESPACE:
        return
    if who != namespace:
        raise PermissionDenied(
            f"a token for namespace {who!r} cannot change datasets of namespace {namespace!r}"
        )
    mounts = spec.get("mounts") if isinstance(spec, Mapping) else None
    for mount in mounts if isinstance(mounts, list) else ():
        point = mount.get("mountPoint") if isinstance(mount, Mapping) else None
        if isinstance(point, str) and is_reference_uri(point):
            target = parse_reference(point)
            if target.namespace != who:
                raise PermissionDenied(
                    f"a token for namespace {who!r} cannot reference {target.ref} "
                    "(another namespace): apply it with the cluster admin's token"
                )


def capability_mounts(registry: DatasetRegistry, record: DatasetRecord) -> dict[str, str]:
    """Mount id -> path prefix inside the mount that a reader of ``record`` may read.

    A dataset's own mounts are readable whole. A reference reads its source's
    mounts below its subpath: a mount that lies inside the subpath whole, the
    mount that holds the subpath below it, the others not at all.
    """
    source, subpath = resolve_source(registry, record)
    readable: dict[str, str] = {}
    for mount in source.mounts:
        if path_under(mount.path, subpath):
            readable[mount.mount_id] = ""
        elif path_under(subpath, mount.path):
            readable[mount.mount_id] = subpath[len(mount.path) :].lstrip("/")
    return readable
