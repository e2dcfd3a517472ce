"""The operator's calls to the Kubernetes API, through the official ``kubernetes`` client.

:class:`KubeApi` wraps the client's ``DynamicClient`` (which discovers every
kind, ours included) with the few calls the handlers make: server-side apply
of desired objects (field manager :data:`FIELD_MANAGER`, conflicts forced:
the operator owns what it creates), get, list by label, delete, the status
subresource, and the data of Secrets. The client is synchronous: every call
here is blocking, and the handlers run them with ``asyncio.to_thread`` so the
event loop never waits on the API server.

API errors become our errors (:func:`translate`): 404 ``NotFound``, 403
``PermissionDenied``, 409 ``AlreadyExists``, 400/422 ``InvalidArgument``,
anything else ``Unavailable`` (worth a retry).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cachecluster.common.errors import (
    AlreadyExists,
    CacheClusterError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

log = logging.getLogger(__name__)

FIELD_MANAGER = "cachecluster-operator"


def translate(exc: Exception, what: str) -> CacheClusterError:
    """One of our errors for an API error (``status`` is the HTTP code)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "summary", None)
    text = reason() if callable(reason) else str(exc).splitlines()[0] if str(exc) else ""
    message = f"{what}: {text or type(exc).__name__}"
    if status == 404:
        return NotFound(message)
    if status in (401, 403):
        return PermissionDenied(message)
    if status == 409:
        return AlreadyExists(message)
    if status in (400, 422):
        return InvalidArgument(message)
    return Unavailable(message)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn the client's exceptions raised inside into our errors naming ``what``."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

    try:
        yield
    except ResourceNotFoundError as exc:  # the kind itself is unknown (CRD not installed)
        raise NotFound(f"{what}: {exc}") from None
    except (ApiException, DynamicApiError) as exc:
        raise translate(exc, what) from None
    except OSError as exc:  # connection refused, DNS...
        raise Unavailable(f"{what}: {exc}") from None


def describe(obj: Mapping[str, Any]) -> str:
    """``Job share/warm-load`` (``PersistentVolume share-data`` when cluster-scoped)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    where = f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))
    return f"{obj.get('kind')} {where}"


def decode_secret(secret: Mapping[str, Any]) -> dict[str, str]:
    """The values of a Secret as the API returns it (base64 ``data``), as text."""
    values: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"{describe(secret)}: key {key!r} is not UTF-8 text") from None
    return values


class KubeApi:
    """Blocking calls to the API server (run them in a thread; see the module docstring)."""

    def __init__(self, api_client: Any | None = None) -> None:
        # The client has no type hints: hold its modules as Any.
        client: Any = importlib.import_module("kubernetes.client")
        config: Any = importlib.import_module("kubernetes.config")
        dynamic: Any = importlib.import_module("kubernetes.dynamic")

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                try:
                    config.load_kube_config()
                except (config.ConfigException, OSError) as exc:
                    raise Unavailable(
                        "no Kubernetes API to talk to: not in a pod, and no usable kubeconfig "
                        f"($KUBECONFIG or ~/.kube/config): {' '.join(str(exc).split())}"
                    ) from None
            api_client = client.ApiClient()
        self._dynamic: Any = dynamic.DynamicClient(api_client)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (create or update); the object as stored."""
        what = f"apply {describe(obj)}"
        with api_errors(what):
            resource = self._resource(obj["apiVersion"], obj["kind"])
            stored = self._dynamic.server_side_apply(
                resource,
                body=dict(obj),
                namespace=(obj.get("metadata") or {}).get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        log.info("applied %s", describe(obj))
        result: dict[str, Any] = stored.to_dict()
        return result

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        where = f"{namespace}/{name}" if namespace else name
        try:
            with api_errors(f"get {kind} {where}"):
                found = self._dynamic.get(
                    self._resource(api_version, kind), name=name, namespace=namespace
                )
        except NotFound:
            return None
        result: dict[str, Any] = found.to_dict()
        return result

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching ``label_selector`` (``namespace`` None: all)."""
        with api_errors(f"list {kind} {label_selector}"):
            found = self._dynamic.get(
                self._resource(api_version, kind),
                namespace=namespace,
                label_selector=label_selector,
            )
        return [item.to_dict() for item in found.items]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete one object (its dependents in the background); False when it was gone."""
        where = f"{namespace}/{name}" if namespace else name
        try:
            with api_errors(f"delete {kind} {where}"):
                self._dynamic.delete(
                    self._resource(api_version, kind),
                    name=name,
                    namespace=namespace,
                    propagation_policy="Background",
                )
        except NotFound:
            return False
        log.info("deleted %s %s", kind, where)
        return True

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: Mapping[str, Any]
    ) -> None:
        """Merge ``status`` into the object's status subresource."""
        with api_errors(f"patch status of {kind} {namespace}/{name}"):
            resource = self._resource(api_version, kind).subresources["status"]
            self._dynamic.patch(
                resource,
                body={"status": dict(status)},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            )

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded values of Secret ``namespace/name``, None when it does not exist."""
        secret = self.get("v1", "Secret", name, namespace)
        return None if secret is None else decode_secret(secret)
