"""Running DataLoads: list the target files, split them into blocks, load them on their owners.

One run of a DataLoad (:class:`LoadRun`):

1. with ``loadMetadata``, drop the dataset's cached listings first;
2. list every file under each target path through the metadata cache (a
   missing target is a failure naming the path);
3. build the hash ring of the membership (in a thread) and compute each
   block's owners, ``replicas`` of them (the target's, else the cluster's);
4. send each worker its blocks with ``WorkerService.LoadBlocks``, in batches
   of :data:`BATCH_BLOCKS`, at most :data:`CALLS_PER_WORKER` calls a worker
   and :data:`CALLS_IN_FLIGHT` in all; the workers fetch in parallel;
5. a failed block is tried once more on the same worker, then on the next
   worker of the ring; if that fails too, its file is reported with the error.

Progress (files, bytes, blocks) is updated in the record's status as batches
complete. The run ends Complete when every block is cached on its owners,
else Failed with a message naming the first paths and the count.

:class:`DataLoadController` owns the runs: one task per DataLoad (a single
run for policy Once, then the TTL countdown; a schedule loop for Cron), the
file of the registry, and the apply/delete calls of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable
from typing import Any

import grpc

from cachecluster.common.block_key import BlockKey, block_count, block_span
from cachecluster.common.errors import NotFound
from cachecluster.common.grpc_auth import auth_interceptors, system_token_source
from cachecluster.common.grpc_errors import one_line
from cachecluster.common.ring import HashRing, RingWorker
from cachecluster.master.config import MasterConfig
from cachecluster.master.dataloads import (
    COMPLETE,
    EXECUTING,
    FAILED,
    FINISHED,
    PENDING,
    DataLoadRecord,
    DataLoadRegistry,
    LoadSpec,
    LoadStatus,
    now_ms,
    parse_dataload_spec,
    parse_schedule,
)
from cachecluster.master.membership import Membership
from cachecluster.master.metadata import EntryStatus, MetadataCache
from cachecluster.protos import worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

BATCH_BLOCKS = 16
"""Blocks in one LoadBlocks call."""
CALLS_PER_WORKER = 4
"""LoadBlocks calls in flight to one worker."""
CALLS_IN_FLIGHT = 16
"""LoadBlocks calls in flight in all."""
WORKER_PARALLELISM = 8
"""UFS fetches a worker runs at once for one call."""
CALL_TIMEOUT_S = 600.0
WAIT_FOR_WORKERS_S = 10.0
"""How long a run waits for a first worker to join (after a master restart)."""
LIST_PAGE_SIZE = 10_000


@dataclasses.dataclass(slots=True)
class _FileWork:
    entry: EntryStatus
    blocks_left: int
    error: str = ""


@dataclasses.dataclass(slots=True)
class _BlockWork:
    file: _FileWork
    ref: worker_pb2.BlockRef
    replicas: int
    copies_left: int
    failed: bool = False


@dataclasses.dataclass(slots=True)
class _Copy:
    """One copy of a block to place on one worker."""

    block: _BlockWork
    owners: tuple[str, ...]
    tried: list[str] = dataclasses.field(default_factory=list)


def _chunks(items: list[_Copy], size: int) -> Iterable[list[_Copy]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LoadRun:
    """One run of a DataLoad; progress goes into ``status`` as it happens."""

    def __init__(
        self,
        spec: LoadSpec,
        status: LoadStatus,
        *,
        metadata: MetadataCache,
        membership: Membership,
        config: MasterConfig,
    ) -> None:
        self.spec = spec
        self.status = status
        self.metadata = metadata
        self.membership = membership
        self.config = config
        self._addresses: dict[str, str] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._worker_slots: dict[str, asyncio.Semaphore] = {}
        self._slots = asyncio.Semaphore(CALLS_IN_FLIGHT)
        self._ring: HashRing | None = None

    async def run(self) -> None:
        """List, plan and load; sets the final phase and message."""
        status = self.status
        try:
            files = await self._list_files()
            if files:
                await self._load(files)
        except Exception as exc:
            log.exception("dataload of %s failed", self._dataset)
            status.message = one_line(exc)
            status.phase = FAILED
        else:
            if status.failed_files:
                status.phase = FAILED
                status.message = status.failure_summary()
            else:
                status.phase = COMPLETE
        finally:
            status.end_time_ms = now_ms()
            for channel in self._channels.values():
                await channel.close()
            self._channels.clear()

    @property
    def _dataset(self) -> str:
        return f"{self.spec.dataset_namespace}/{self.spec.dataset_name}"

    # -- listing ---------------------------------------------------------------

    async def _list_files(self) -> dict[str, tuple[EntryStatus, int]]:
        """Dataset path -> (file, replicas) under every target; missing targets fail."""
        spec = self.spec
        namespace, name = spec.dataset_namespace, spec.dataset_name
        if spec.load_metadata:
            self.metadata.refresh(namespace, name)
        files: dict[str, tuple[EntryStatus, int]] = {}
        for target in spec.targets:
            try:
                top = await self.metadata.get_status(namespace, name, target.path)
            except NotFound as exc:
                self.status.add_failure(target.path, one_line(exc))
                continue
            entries: list[EntryStatus] = []
            if top.is_dir:
                token = ""
                while True:
                    page, token = await self.metadata.list_status(
                        namespace,
                        name,
                        target.path,
                        recursive=True,
                        page_size=LIST_PAGE_SIZE,
                        page_token=token,
                    )
                    entries.extend(page)
                    if not token:
                        break
            else:
                entries.append(top)
            for entry in entries:
                if not entry.is_dir and entry.mount_id:
                    files.setdefault(entry.path, (entry, target.replicas))
        self.status.files_total = len(files)
        self.status.bytes_total = sum(entry.size for entry, _ in files.values())
        return files

    # -- placement ---------------------------------------------------------------

    async def _build_ring(self) -> HashRing:
        # Right after a master (re)start, workers are still re-registering: a ring of
        # those known so far would send blocks to the wrong owners. Wait out the grace.
        while (grace := self.membership.startup_grace_left()) > 0:
            await asyncio.sleep(grace)
        members = self.membership.ring_members()
        deadline = time.monotonic() + WAIT_FOR_WORKERS_S
        while not members and time.monotonic() < deadline:  # a master that just started
            await asyncio.sleep(0.2)
            members = self.membership.ring_members()
        if not members:
            raise NotFound("no worker is on the ring: start workers first")
        self._addresses = {
            member.worker_id: f"{member.endpoint.host}:{member.endpoint.grpc_port}"
            for member in members
        }
        ring = HashRing(
            [RingWorker(m.worker_id, m.address, m.weight) for m in members],
            vnodes=self.config.vnodes,
        )
        await asyncio.to_thread(ring.build)
        return ring

    def _plan(
        self, files: dict[str, tuple[EntryStatus, int]], ring: HashRing
    ) -> dict[str, list[_Copy]]:
        block_size = self.config.block_size
        per_worker: dict[str, list[_Copy]] = {}
        total_blocks = 0
        for entry, target_replicas in files.values():
            count = block_count(entry.size, block_size)
            work = _FileWork(entry, count)
            if count == 0:
                self.status.files_done += 1
                continue
            replicas = min(target_replicas or self.config.replicas, len(ring))
            mount = self.metadata.get_mount(entry.mount_id)
            for index in range(count):
                offset, length = block_span(index, entry.size, block_size)
                key = BlockKey(entry.mount_id, entry.mount_path, entry.version, index)
                ref = worker_pb2.BlockRef(
                    block_id=key.id,
                    mount_id=entry.mount_id,
                    ufs_uri=mount.uri,
                    path=entry.mount_path,
                    version=entry.version,
                    index=index,
                    offset=offset,
                    length=length,
                )
                owners = tuple(
                    ring.owners(key.placement_key(block_size), min(len(ring), replicas + 1))
                )
                block = _BlockWork(work, ref, replicas, replicas)
                total_blocks += 1
                for owner in owners[:replicas]:
                    copy = _Copy(block, owners, [owner])
                    per_worker.setdefault(owner, []).append(copy)
        self.status.blocks_total = total_blocks
        return per_worker

    # -- loading -----------------------------------------------------------------

    async def _load(self, files: dict[str, tuple[EntryStatus, int]]) -> None:
        self._ring = ring = await self._build_ring()
        per_worker = self._plan(files, ring)
        batches = [list(_chunks(copies, BATCH_BLOCKS)) for copies in per_worker.values()]
        workers = list(per_worker)
        # Round robin over the workers, so that every worker starts at once.
        await asyncio.gather(
            *(
                self._send_batch(workers[index], batch)
                for round_ in itertools.zip_longest(*batches)
                for index, batch in enumerate(round_)
                if batch is not None
            )
        )

    def _stub(self, worker_id: str) -> worker_pb2_grpc.WorkerServiceStub:
        channel = self._channels.get(worker_id)
        if channel is None:
            # With a cluster secret, workers want a system token on every call.
            secret = getattr(self.config, "cluster_secret", None)
            channel = grpc.aio.insecure_channel(
                self._addresses[worker_id],
                interceptors=auth_interceptors(system_token_source(secret)),
            )
            self._channels[worker_id] = channel
        return worker_pb2_grpc.WorkerServiceStub(channel)

    async def _call(self, worker_id: str, copies: list[_Copy]) -> list[str]:
        """LoadBlocks on ``worker_id``; the error of each copy ("" when cached)."""
        slots = self._worker_slots.setdefault(worker_id, asyncio.Semaphore(CALLS_PER_WORKER))
        request = worker_pb2.LoadBlocksRequest(
            blocks=[copy.block.ref for copy in copies], parallelism=WORKER_PARALLELISM
        )
        # The worker's slot first: a call waiting for its worker must not hold one of the
        # global slots, or the first worker's batches would take them all and starve the rest.
        async with slots, self._slots:
            try:
                response = await self._stub(worker_id).LoadBlocks(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                message = f"worker {worker_id}: {exc.code().name}: {exc.details()}"
                return [message] * len(copies)
        errors: list[str] = []
        for result in response.results:
            if result.ok:
                self.status.bytes_fetched += result.bytes_fetched
                errors.append("")
            else:
                errors.append(f"worker {worker_id}: {result.error.message}")
        return errors

    async def _send_batch(self, worker_id: str, copies: list[_Copy]) -> None:
        """Load a batch on its worker; retry failures there, then on the next owner."""
        errors = await self._call(worker_id, copies)
        failed = self._settle(copies, errors, final=False)
        if failed:
            retry = [copy for copy, _ in failed]
            errors = await self._call(worker_id, retry)
            failed = self._settle(retry, errors, final=False)
        if not failed:
            return
        moved: dict[str, list[_Copy]] = {}
        for copy, error in failed:
            # The next owner that holds no copy of this block and was not tried.
            spare = [w for w in copy.owners[copy.block.replicas :] if w not in copy.tried]
            if not spare:
                self._settle([copy], [error], final=True)
                continue
            copy.tried.append(spare[0])
            moved.setdefault(spare[0], []).append(copy)
        for spare_id, spare_copies in moved.items():
            errors = await self._call(spare_id, spare_copies)
            self._settle(spare_copies, errors, final=True)

    def _settle(
        self, copies: list[_Copy], errors: list[str], *, final: bool
    ) -> list[tuple[_Copy, str]]:
        """Count loaded copies; return the failed ones (counted as failed when ``final``)."""
        failed: list[tuple[_Copy, str]] = []
        for copy, error in zip(copies, errors, strict=True):
            if error and not final:
                failed.append((copy, error))
                continue
            block = copy.block
            block.copies_left -= 1
            if error:
                block.failed = True
                if not block.file.error:
                    block.file.error = error
            if block.copies_left > 0:
                continue
            self.status.blocks_done += 1
            if not block.failed:
                self.status.bytes_done += block.ref.length
            work = block.file
            work.blocks_left -= 1
            if work.blocks_left == 0:
                if work.error:
                    self.status.add_failure(work.entry.path, work.error)
                else:
                    self.status.files_done += 1
        return failed


class DataLoadController:
    """Every DataLoad's task, and the apply/get/delete calls of ``DataLoadService``."""

    def __init__(
        self,
        registry: DataLoadRegistry,
        *,
        metadata: MetadataCache,
        membership: Membership,
        config: MasterConfig,
    ) -> None:
        self.registry = registry
        self.metadata = metadata
        self.membership = membership
        self.config = config
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._save_lock = asyncio.Lock()

    async def start(self) -> int:
        """Load the file and resume every DataLoad; the number loaded."""
        count = await asyncio.to_thread(self.registry.load)
        for record in self.registry.records():
            self._launch(record)
        return count

    async def close(self) -> None:
        """Cancel every task (finished statuses are already on disk)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def save(self) -> None:
        """Write the registry's file (in a thread)."""
        async with self._save_lock:
            write = asyncio.ensure_future(
                asyncio.to_thread(self.registry.write, self.registry.snapshot())
            )
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # A cancelled run (a delete, a re-apply) must not release the lock while
                # its thread still writes: the next save would race it on the same file
                # and could land before it, bringing a deleted DataLoad back.
                await write
                raise

    async def apply(self, namespace: str, name: str, spec: Any) -> tuple[DataLoadRecord, bool]:
        """Create or replace a DataLoad; a changed spec runs again. ``(record, created)``."""
        parsed = parse_dataload_spec(namespace, name, spec)
        # The dataset must exist now: a typo fails the apply, not a later run.
        self.metadata.registry.get(parsed.dataset_namespace, parsed.dataset_name)
        old = self.registry.find(namespace, name)
        if old is not None and old.spec == spec:
            return old, False
        await self._cancel(namespace, name)
        record = DataLoadRecord(
            namespace=namespace,
            name=name,
            spec=spec,
            parsed=parsed,
            created_ms=old.created_ms if old is not None else now_ms(),
            generation=old.generation + 1 if old is not None else 1,
        )
        self.registry.put(record)
        await self.save()
        self._launch(record)
        return record, old is None

    async def delete(self, namespace: str, name: str) -> bool:
        """Delete a DataLoad, cancelling its run; False when there was none."""
        await self._cancel(namespace, name)
        removed = self.registry.remove(namespace, name)
        if removed is not None:
            await self.save()
        return removed is not None

    async def _cancel(self, namespace: str, name: str) -> None:
        task = self._tasks.pop((namespace, name), None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _launch(self, record: DataLoadRecord) -> None:
        key = (record.namespace, record.name)
        body = self._cron(record) if record.parsed.policy == "Cron" else self._once(record)
        self._tasks[key] = asyncio.create_task(body, name=f"dataload-{record.ref}")

    async def _run(self, record: DataLoadRecord) -> None:
        record.status.begin_run()
        await self.save()
        log.info("dataload %s: run %d started", record.ref, record.status.runs)
        run = LoadRun(
            record.parsed,
            record.status,
            metadata=self.metadata,
            membership=self.membership,
            config=self.config,
        )
        await run.run()
        await self.save()
        status = record.status
        log.info(
            "dataload %s: %s in %.1fs (%d/%d files, %d bytes)%s",
            record.ref,
            status.phase,
            status.duration_ms / 1000,
            status.files_done,
            status.files_total,
            status.bytes_done,
            f": {status.message}" if status.message else "",
        )

    async def _once(self, record: DataLoadRecord) -> None:
        if record.status.phase not in FINISHED:
            await self._run(record)
        ttl = record.parsed.ttl_seconds_after_finished
        if ttl is None:
            return
        left = record.status.end_time_ms / 1000 + ttl - time.time()
        if left > 0:
            await asyncio.sleep(left)
        if self.registry.find(record.namespace, record.name) is record:
            log.info("dataload %s: deleted %gs after it finished", record.ref, ttl)
            self._tasks.pop((record.namespace, record.name), None)
            self.registry.remove(record.namespace, record.name)
            await self.save()

    async def _cron(self, record: DataLoadRecord) -> None:
        next_after = parse_schedule(record.parsed.schedule)
        if record.status.phase in (PENDING, EXECUTING) and record.status.runs:
            await self._run(record)  # interrupted by a master restart
        while True:
            due = next_after(time.time())
            await asyncio.sleep(max(0.0, due - time.time()))
            record.status.last_schedule_time_ms = now_ms()
            await self._run(record)
