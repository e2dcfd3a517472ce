"""The master's gRPC servicers: thin translations between protos and the master's state.

Each servicer is decorated with :func:`~cachecluster.common.grpc_errors.grpc_servicer`,
so our errors become status codes in one place; methods raise, never abort.

* :class:`MasterServicer`: RegisterWorker, ReportBlocks, Heartbeat, GetRing, ListWorkers;
* :class:`MetadataServicer`: GetStatus, ListStatus, GetMount, WatchMounts;
* :class:`DatasetServicer`: Apply/Get/List/DeleteDataset.
* :class:`DataLoadServicer`: Apply/Get/List/DeleteDataLoad;
* :class:`StatusServicer`: GetDatasetStatus, ListDatasetStatus, ListRuntimeStatus;
* :class:`ResourceServicer`: Put/Delete/ListSecrets, Apply/Get/List/DeleteRuntime.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from cachecluster.api.documents import parse_document
from cachecluster.api.models import CacheRuntimeSpec, check_name
from cachecluster.common.errors import InvalidArgument, NotFound, Unavailable
from cachecluster.common.grpc_errors import grpc_servicer
from cachecluster.common.ring import RING_SCHEME
from cachecluster.master import access
from cachecluster.master.config import MasterConfig
from cachecluster.master.dataload_runner import DataLoadController
from cachecluster.master.dataloads import dataload_proto, parse_dataload_spec
from cachecluster.master.datasets import DatasetRecord, DatasetRegistry, MountInfo
from cachecluster.master.membership import BlockReport, Membership, WorkerRecord, WorkerState
from cachecluster.master.metadata import EntryStatus, MetadataCache
from cachecluster.master.runtimes import RuntimeRecord
from cachecluster.master.status import DatasetFigures, DatasetStatusBoard
from cachecluster.protos import (
    dataload_pb2,
    dataload_pb2_grpc,
    master_pb2,
    master_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)

STATE_TO_PROTO: dict[WorkerState, int] = {
    WorkerState.ACTIVE: master_pb2.WORKER_STATE_ACTIVE,
    WorkerState.SUSPECT: master_pb2.WORKER_STATE_SUSPECT,
    WorkerState.LOST: master_pb2.WORKER_STATE_LOST,
}

DATASET_PHASE = "Bound"
"""Phase of every registered dataset: this master's cache cluster serves it."""


def _ring_member(record: WorkerRecord) -> master_pb2.RingMember:
    return master_pb2.RingMember(
        worker_id=record.worker_id,
        endpoint=record.endpoint,
        weight=record.weight,
        state=STATE_TO_PROTO[record.state],  # type: ignore[arg-type]
    )


def _worker_status(record: WorkerRecord) -> master_pb2.WorkerStatus:
    return master_pb2.WorkerStatus(
        worker_id=record.worker_id,
        incarnation=record.incarnation,
        endpoint=record.endpoint,
        state=STATE_TO_PROTO[record.state],  # type: ignore[arg-type]
        weight=record.weight,
        tiers=record.tiers,
        counters=record.counters,
        block_count=record.block_count,
        registered_at_ms=record.registered_at_ms,
        last_heartbeat_ms=record.last_heartbeat_ms,
        version=record.version,
    )


def _file_status(entry: EntryStatus) -> master_pb2.FileStatus:
    return master_pb2.FileStatus(
        path=entry.path,
        size=entry.size,
        version=entry.version,
        mtime=entry.mtime,
        is_dir=entry.is_dir,
        mount_id=entry.mount_id,
        mount_path=entry.mount_path,
    )


def mount_info_proto(mount: MountInfo) -> master_pb2.MountInfo:
    """The proto form of a mount (options included: workers need credentials)."""
    return master_pb2.MountInfo(
        mount_id=mount.mount_id,
        dataset=master_pb2.DatasetRef(namespace=mount.namespace, name=mount.dataset),
        name=mount.name,
        uri=mount.uri,
        path=mount.path,
        options=dict(mount.options),
    )


def dataset_proto(record: DatasetRecord) -> master_pb2.Dataset:
    """The proto form of a registered dataset."""
    return master_pb2.Dataset(
        ref=master_pb2.DatasetRef(namespace=record.namespace, name=record.name),
        spec_json=json.dumps(record.public_spec(), sort_keys=True).encode("utf-8"),
        status_json=json.dumps(record.status(), sort_keys=True).encode("utf-8"),
        phase=DATASET_PHASE,
        generation=record.generation,
    )


def _ref(ref: master_pb2.DatasetRef) -> tuple[str, str]:
    if not ref.namespace or not ref.name:
        raise InvalidArgument("dataset: namespace and name are required")
    return ref.namespace, ref.name


@grpc_servicer
class MasterServicer(master_pb2_grpc.MasterServiceServicer):
    """Membership and the ring."""

    def __init__(self, membership: Membership, config: MasterConfig) -> None:
        self._membership = membership
        self._config = config

    async def RegisterWorker(
        self, request: master_pb2.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.RegisterWorkerResponse:
        epoch = self._membership.register(
            request.worker_id,
            request.incarnation,
            request.endpoint,
            tiers=request.tiers,
            block_ids=request.block_ids,
            blocks_follow=request.blocks_follow,
            version=request.version,
        )
        return master_pb2.RegisterWorkerResponse(
            epoch=epoch,
            heartbeat_interval_ms=round(self._config.heartbeat_interval * 1000),
            block_size=self._config.block_size,
        )

    async def ReportBlocks(
        self,
        request_iterator: AsyncIterator[master_pb2.ReportBlocksRequest],
        context: grpc.aio.ServicerContext,
    ) -> master_pb2.ReportBlocksResponse:
        report: BlockReport | None = None
        async for chunk in request_iterator:
            if report is None:
                report = self._membership.start_block_report(
                    chunk.worker_id, chunk.incarnation, full=chunk.full
                )
            elif (chunk.worker_id, chunk.incarnation) != (report.worker_id, report.incarnation):
                raise InvalidArgument("ReportBlocks: every message must name the same worker")
            report.add_chunk(chunk.added, chunk.removed)
        if report is None:
            raise InvalidArgument("ReportBlocks: empty stream (send at least one message)")
        return master_pb2.ReportBlocksResponse(block_count=report.finish())

    async def Heartbeat(
        self, request: master_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.HeartbeatResponse:
        epoch, reregister = self._membership.heartbeat(
            request.worker_id,
            request.incarnation,
            tiers=request.tiers,
            counters=request.counters if request.HasField("counters") else None,
            block_count=request.block_count,
        )
        return master_pb2.HeartbeatResponse(epoch=epoch, reregister=reregister)

    async def GetRing(
        self, request: master_pb2.GetRingRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetRingResponse:
        epoch = self._membership.epoch
        if request.known_epoch == epoch:
            return master_pb2.GetRingResponse(epoch=epoch, unchanged=True)
        withheld = self._membership.ring_withheld(request.known_epoch)
        if withheld > 0:  # just (re)started: our ring lacks workers that are still coming back
            raise Unavailable(
                f"the master has just started and workers are still registering: keep ring "
                f"{request.known_epoch} and ask again in {withheld:.1f}s"
            )
        return master_pb2.GetRingResponse(
            epoch=epoch,
            members=[_ring_member(record) for record in self._membership.ring_members()],
            vnodes=self._config.vnodes,
            replicas=self._config.replicas,
            block_size=self._config.block_size,
            scheme=RING_SCHEME,
        )

    async def ListWorkers(
        self, request: master_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListWorkersResponse:
        records = self._membership.workers(include_lost=request.include_lost)
        return master_pb2.ListWorkersResponse(
            epoch=self._membership.epoch,
            workers=[_worker_status(record) for record in records],
        )


@grpc_servicer
class MetadataServicer(master_pb2_grpc.MetadataServiceServicer):
    """File status and listings of datasets; mounts for workers."""

    def __init__(self, metadata: MetadataCache) -> None:
        self._metadata = metadata

    async def GetStatus(
        self, request: master_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetStatusResponse:
        namespace, name = _ref(request.dataset)
        access.check_visible(namespace, name)
        entry = await self._metadata.get_status(namespace, name, request.path)
        return master_pb2.GetStatusResponse(status=_file_status(entry))

    async def ListStatus(
        self, request: master_pb2.ListStatusRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListStatusResponse:
        namespace, name = _ref(request.dataset)
        access.check_visible(namespace, name)
        entries, token = await self._metadata.list_status(
            namespace,
            name,
            request.path,
            recursive=request.recursive,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return master_pb2.ListStatusResponse(
            entries=[_file_status(entry) for entry in entries], next_page_token=token
        )

    async def GetMount(
        self, request: master_pb2.GetMountRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetMountResponse:
        if not request.mount_id:
            raise InvalidArgument("GetMount: mount_id is required")
        return master_pb2.GetMountResponse(
            mount=mount_info_proto(self._metadata.get_mount(request.mount_id))
        )

    async def WatchMounts(
        self, request: master_pb2.WatchMountsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[master_pb2.WatchMountsResponse]:
        async for mounts in self._metadata.watch_mounts():
            yield master_pb2.WatchMountsResponse(mounts=[mount_info_proto(m) for m in mounts])


@grpc_servicer
class DatasetServicer(master_pb2_grpc.DatasetServiceServicer):
    """The dataset registry. Changes are serialised; the file is written in a thread."""

    def __init__(self, registry: DatasetRegistry, metadata: MetadataCache) -> None:
        self._registry = registry
        self._metadata = metadata
        self._lock = asyncio.Lock()

    async def ApplyDataset(
        self, request: master_pb2.ApplyDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ApplyDatasetResponse:
        namespace, name = _ref(request.ref)
        try:
            spec: Any = json.loads(request.spec_json or b"{}")
        except ValueError as exc:
            raise InvalidArgument(
                f"dataset {namespace}/{name}: spec_json is not JSON: {exc}"
            ) from None
        access.check_writable(namespace, spec)
        async with self._lock:
            mounts = self._registry.validate(namespace, name, spec)
            try:
                # Open the backends first: a bad option fails the apply, not a later read.
                await self._metadata.check_mounts(mounts)
                record, created = await asyncio.to_thread(
                    self._registry.apply, namespace, name, spec
                )
            finally:
                await self._metadata.sync_mounts()
        return master_pb2.ApplyDatasetResponse(dataset=dataset_proto(record), created=created)

    async def GetDataset(
        self, request: master_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetDatasetResponse:
        namespace, name = _ref(request.ref)
        access.check_visible(namespace, name)
        return master_pb2.GetDatasetResponse(
            dataset=dataset_proto(self._registry.get(namespace, name))
        )

    async def ListDatasets(
        self, request: master_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListDatasetsResponse:
        namespace = access.visible_namespace(request.namespace)
        records = [] if namespace is None else self._registry.datasets(namespace)
        return master_pb2.ListDatasetsResponse(datasets=[dataset_proto(r) for r in records])

    async def DeleteDataset(
        self, request: master_pb2.DeleteDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.DeleteDatasetResponse:
        namespace, name = _ref(request.ref)
        access.check_visible(namespace, name)
        access.check_writable(namespace)
        async with self._lock:
            try:
                old = await asyncio.to_thread(self._registry.delete, namespace, name)
            finally:
                await self._metadata.sync_mounts()
        return master_pb2.DeleteDatasetResponse(deleted=old is not None)


@grpc_servicer
class DataLoadServicer(dataload_pb2_grpc.DataLoadServiceServicer):
    """DataLoads: specs as JSON (Fluid names), run by the :class:`DataLoadController`."""

    def __init__(self, controller: DataLoadController) -> None:
        self._controller = controller
        self._lock = asyncio.Lock()

    async def ApplyDataLoad(
        self, request: dataload_pb2.ApplyDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.ApplyDataLoadResponse:
        namespace, name = _ref(request.ref)
        try:
            spec: Any = json.loads(request.spec_json or b"{}")
        except ValueError as exc:
            raise InvalidArgument(
                f"dataload {namespace}/{name}: spec_json is not JSON: {exc}"
            ) from None
        access.check_writable(namespace)
        parsed = parse_dataload_spec(namespace, name, spec)
        access.check_visible(parsed.dataset_namespace, parsed.dataset_name)
        access.check_writable(parsed.dataset_namespace)
        async with self._lock:
            record, created = await self._controller.apply(namespace, name, spec)
        return dataload_pb2.ApplyDataLoadResponse(dataload=dataload_proto(record), created=created)

    async def GetDataLoad(
        self, request: dataload_pb2.GetDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.GetDataLoadResponse:
        namespace, name = _ref(request.ref)
        access.check_visible(namespace, name)
        record = self._controller.registry.get(namespace, name)
        return dataload_pb2.GetDataLoadResponse(dataload=dataload_proto(record))

    async def ListDataLoads(
        self, request: dataload_pb2.ListDataLoadsRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.ListDataLoadsResponse:
        namespace = access.visible_namespace(request.namespace)
        records = [] if namespace is None else self._controller.registry.records(namespace)
        return dataload_pb2.ListDataLoadsResponse(dataloads=[dataload_proto(r) for r in records])

    async def DeleteDataLoad(
        self, request: dataload_pb2.DeleteDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.DeleteDataLoadResponse:
        namespace, name = _ref(request.ref)
        access.check_visible(namespace, name)
        access.check_writable(namespace)
        async with self._lock:
            deleted = await self._controller.delete(namespace, name)
        return dataload_pb2.DeleteDataLoadResponse(deleted=deleted)


def dataset_status_proto(figures: DatasetFigures) -> status_pb2.DatasetStatus:
    """The proto form of a dataset's figures (no option value, no credential)."""
    return status_pb2.DatasetStatus(
        ref=master_pb2.DatasetRef(namespace=figures.namespace, name=figures.name),
        phase=figures.phase,
        ufs_total_bytes=figures.ufs_total_bytes,
        cached_bytes=figures.cached_bytes,
        cache_capacity_bytes=figures.cache_capacity_bytes,
        cached_percentage=figures.cached_percentage,
        file_count=figures.file_count,
        cache_hit_ratio=figures.cache_hit_ratio,
        created_ms=figures.created_ms,
        runtime=figures.runtime,
        reference=figures.reference,
        access_modes=list(figures.access_modes),
        message=figures.message,
        ufs_computed_ms=figures.ufs_computed_ms,
    )


@grpc_servicer
class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    """Dataset figures and runtime phases for ``cachecluster get`` (namespace checks as above)."""

    def __init__(self, board: DatasetStatusBoard) -> None:
        self._board = board

    async def GetDatasetStatus(
        self, request: status_pb2.GetDatasetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.GetDatasetStatusResponse:
        namespace, name = _ref(request.ref)
        access.check_visible(namespace, name)
        figures = await self._board.dataset_status(namespace, name, refresh=request.refresh)
        return status_pb2.GetDatasetStatusResponse(status=dataset_status_proto(figures))

    async def ListDatasetStatus(
        self, request: status_pb2.ListDatasetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.ListDatasetStatusResponse:
        namespace = access.visible_namespace(request.namespace)
        figures = (
            []
            if namespace is None
            else await self._board.list_status(namespace, refresh=request.refresh)
        )
        return status_pb2.ListDatasetStatusResponse(
            datasets=[dataset_status_proto(item) for item in figures]
        )

    async def ListRuntimeStatus(
        self, request: status_pb2.ListRuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.ListRuntimeStatusResponse:
        namespace = access.visible_namespace(request.namespace)
        rows = [] if namespace is None else self._board.runtime_status(namespace)
        return status_pb2.ListRuntimeStatusResponse(
            runtimes=[
                status_pb2.RuntimeStatus(
                    ref=master_pb2.DatasetRef(namespace=row.namespace, name=row.name),
                    kind=row.kind,
                    master_phase=row.master_phase,
                    worker_phase=row.worker_phase,
                    fuse_phase=row.fuse_phase,
                    desired_workers=row.desired_workers,
                    ready_workers=row.ready_workers,
                    cache_capacity_bytes=row.cache_capacity_bytes,
                    created_ms=row.created_ms,
                )
                for row in rows
            ]
        )


def runtime_proto(record: RuntimeRecord, registry: DatasetRegistry) -> resources_pb2.Runtime:
    """The proto form of a runtime, with the datasets bound to it."""
    return resources_pb2.Runtime(
        ref=master_pb2.DatasetRef(namespace=record.namespace, name=record.name),
        kind=record.kind,
        api_version=record.api_version,
        spec_json=json.dumps(record.spec.to_dict(), sort_keys=True).encode("utf-8"),
        generation=record.generation,
        created_ms=record.created_ms,
        datasets=[
            r.ref for r in registry.datasets() if r.runtime == (record.namespace, record.name)
        ],
    )


@grpc_servicer
class ResourceServicer(resources_pb2_grpc.ResourceServiceServicer):
    """Secrets (values in, never out) and runtimes; both re-resolve the datasets they touch."""

    def __init__(self, registry: DatasetRegistry, metadata: MetadataCache) -> None:
        self._registry = registry
        self._metadata = metadata
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        self._registry.refresh()
        await self._metadata.sync_mounts()

    async def PutSecret(
        self, request: resources_pb2.PutSecretRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.PutSecretResponse:
        namespace, name = _ref(request.ref)
        check_name("secret name", name)
        check_name("secret namespace", namespace, label=True)
        access.check_writable(namespace)
        if not request.data:
            raise InvalidArgument(f"secret {namespace}/{name}: no data")
        async with self._lock:
            result = await asyncio.to_thread(
                self._registry.secrets.put, namespace, name, dict(request.data)
            )
            if result != "unchanged":
                await self._refresh()
        return resources_pb2.PutSecretResponse(result=result, keys=sorted(request.data))

    async def DeleteSecret(
        self, request: resources_pb2.DeleteSecretRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.DeleteSecretResponse:
        namespace, name = _ref(request.ref)
        access.check_writable(namespace)
        async with self._lock:
            users = self._registry.secret_users(namespace, name)
            if users:
                raise InvalidArgument(
                    f"secret {namespace}/{name} cannot be deleted: used by the encryptOptions "
                    f"of {', '.join(users)} (delete or change those first)"
                )
            deleted = await asyncio.to_thread(self._registry.secrets.delete, namespace, name)
        return resources_pb2.DeleteSecretResponse(deleted=deleted)

    async def ListSecrets(
        self, request: resources_pb2.ListSecretsRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ListSecretsResponse:
        namespace = access.visible_namespace(request.namespace)
        records = [] if namespace is None else self._registry.secrets.secrets(namespace)
        return resources_pb2.ListSecretsResponse(
            secrets=[
                resources_pb2.SecretInfo(
                    ref=master_pb2.DatasetRef(namespace=r.namespace, name=r.name),
                    keys=r.keys,
                    created_ms=r.created_ms,
                )
                for r in records
            ]
        )

    async def ApplyRuntime(
        self, request: resources_pb2.ApplyRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ApplyRuntimeResponse:
        namespace, name = _ref(request.ref)
        access.check_writable(namespace)
        try:
            raw: Any = json.loads(request.spec_json or b"{}")
        except ValueError as exc:
            raise InvalidArgument(
                f"runtime {namespace}/{name}: spec_json is not JSON: {exc}"
            ) from None
        document = {
            "apiVersion": request.api_version,
            "kind": request.kind,
            "metadata": {"namespace": namespace, "name": name},
            "spec": raw,
        }
        parsed = parse_document(document, "ApplyRuntime")
        if not isinstance(parsed.spec, CacheRuntimeSpec):
            raise InvalidArgument(f"ApplyRuntime: kind {request.kind!r} is not a runtime")
        async with self._lock:
            record, result = await asyncio.to_thread(
                self._registry.runtimes.apply,
                namespace,
                name,
                request.kind,
                request.api_version,
                parsed.spec,
            )
            if result != "unchanged":
                await self._refresh()
        return resources_pb2.ApplyRuntimeResponse(
            runtime=runtime_proto(record, self._registry), result=result
        )

    async def GetRuntime(
        self, request: resources_pb2.GetRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.GetRuntimeResponse:
        namespace, name = _ref(request.ref)
        if not access.sees_everything(access.caller()) and access.caller() != namespace:
            raise NotFound(f"no runtime {namespace}/{name}")
        record = self._registry.runtimes.get(namespace, name)
        return resources_pb2.GetRuntimeResponse(runtime=runtime_proto(record, self._registry))

    async def ListRuntimes(
        self, request: resources_pb2.ListRuntimesRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ListRuntimesResponse:
        namespace = access.visible_namespace(request.namespace)
        records = [] if namespace is None else self._registry.runtimes.runtimes(namespace)
        return resources_pb2.ListRuntimesResponse(
            runtimes=[runtime_proto(r, self._registry) for r in records]
        )

    async def DeleteRuntime(
        self, request: resources_pb2.DeleteRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.DeleteRuntimeResponse:
        namespace, name = _ref(request.ref)
        access.check_writable(namespace)
        async with self._lock:
            old = await asyncio.to_thread(self._registry.runtimes.delete, namespace, name)
            if old is not None:
                await self._refresh()
        return resources_pb2.DeleteRuntimeResponse(deleted=old is not None)
