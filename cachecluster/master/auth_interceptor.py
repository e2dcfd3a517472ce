"""The master's authentication rules; the interceptor is in ``common.auth_interceptor``.

With a cluster secret every call but the health service needs a valid token;
its namespace is in :data:`CALLER` for the servicers (see
:mod:`cachecluster.master.access`). Worker calls (RegisterWorker,
ReportBlocks, Heartbeat) and ``GetMount``/``WatchMounts``, which answer with UFS
credentials, admit only the system namespace that workers sign with the
cluster secret. Without a secret (open/dev mode) nothing is checked and
:data:`CALLER` stays ``None``, which the access rules read as "sees everything".
"""

from __future__ import annotations

from cachecluster.common.auth import SYSTEM_NAMESPACE
from cachecluster.common.auth_interceptor import CALLER, TokenInterceptor

__all__ = ["CALLER", "SYSTEM_METHODS", "AuthInterceptor"]

SYSTEM_METHODS = frozenset(
    {
        "/cachecluster.v1.MasterService/RegisterWorker",
        "/cachecluster.v1.MasterService/ReportBlocks",
        "/cachecluster.v1.MasterService/Heartbeat",
        "/cachecluster.v1.MetadataService/GetMount",
        "/cachecluster.v1.MetadataService/WatchMounts",
    }
)
"""Methods only workers (the system namespace) may call."""


class AuthInterceptor(TokenInterceptor):
    """The master's token check: any valid token, the system one for :data:`SYSTEM_METHODS`."""

    def __init__(self, secret: bytes) -> None:
        super().__init__(
            secret, admitted={method: (SYSTEM_NAMESPACE,) for method in SYSTEM_METHODS}
        )
