"""Our errors across a real grpc.aio server and back, kind by kind."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from cachecluster.common.error_map import to_exit_code, to_grpc_status
from cachecluster.common.errors import (
    AlreadyExists,
    CacheClusterError,
    ConfigError,
    CorruptBlock,
    ErrorKind,
    InvalidArgument,
    InvalidPath,
    NotFound,
    PermissionDenied,
    ReadOnly,
    UfsError,
    Unavailable,
    VersionChanged,
)
from cachecluster.common.grpc_errors import (
    MAX_DETAILS,
    RemoteError,
    error_from_rpc_error,
    grpc_method,
    grpc_servicer,
    raise_from_rpc_error,
    rpc_errors,
)
from cachecluster.protos import master_pb2, master_pb2_grpc, worker_pb2, worker_pb2_grpc
from tests.grpc_helpers import grpc_channel

Code = grpc.StatusCode


class Worker(worker_pb2_grpc.WorkerServiceServicer):
    """GetStats raises ``error`` when set; EvictBlocks calls ``downstream``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.downstream: worker_pb2_grpc.WorkerServiceStub | None = None

    @grpc_method
    async def GetStats(
        self, request: worker_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.GetStatsResponse:
        if self.error is not None:
            raise self.error
        return worker_pb2.GetStatsResponse(worker_id="w1", block_count=3)

    @grpc_method
    async def EvictBlocks(
        self, request: worker_pb2.EvictBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.EvictBlocksResponse:
        if request.block_ids == ["abort"]:
            await context.abort(Code.RESOURCE_EXHAUSTED, "aborted by the method")
        assert self.downstream is not None
        stats = await self.downstream.GetStats(worker_pb2.GetStatsRequest())
        return worker_pb2.EvictBlocksResponse(evicted=stats.block_count)


@grpc_servicer
class Master(master_pb2_grpc.MasterServiceServicer):
    """ReportBlocks counts ids and refuses unknown workers; GetRing is a bug."""

    async def ReportBlocks(
        self,
        request_iterator: AsyncIterator[master_pb2.ReportBlocksRequest],
        context: grpc.aio.ServicerContext,
    ) -> master_pb2.ReportBlocksResponse:
        count = 0
        async for chunk in request_iterator:
            if chunk.worker_id != "w1":
                raise NotFound(f"worker {chunk.worker_id}: not registered")
            count += len(chunk.added)
        return master_pb2.ReportBlocksResponse(block_count=count)

    async def GetRing(
        self, request: master_pb2.GetRingRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetRingResponse:
        raise KeyError("secret-token-123")


CASES = [
    (InvalidArgument("page_size -1: must be >= 0"), Code.INVALID_ARGUMENT, InvalidArgument),
    (ConfigError("tiers[0].quota", "must be > 0"), Code.INVALID_ARGUMENT, InvalidArgument),
    (InvalidPath("../x: escapes the dataset"), Code.INVALID_ARGUMENT, InvalidArgument),
    (NotFound("dataset ns/imagenet: not found"), Code.NOT_FOUND, NotFound),
    (PermissionDenied("namespace b: wrong token"), Code.PERMISSION_DENIED, PermissionDenied),
    (Unavailable("worker w2: connection refused"), Code.UNAVAILABLE, Unavailable),
    (UfsError("oss://bucket/a: 503 SlowDown"), Code.UNAVAILABLE, Unavailable),
    (VersionChanged("a.bin: etag changed"), Code.ABORTED, VersionChanged),
    (CorruptBlock("block 00ff: checksum mismatch"), Code.DATA_LOSS, CorruptBlock),
    (ReadOnly("dataset ns/imagenet is read-only"), Code.FAILED_PRECONDITION, ReadOnly),
    (AlreadyExists("/t: already mounted from /x"), Code.ALREADY_EXISTS, AlreadyExists),
    (CacheClusterError("invariant broken"), Code.INTERNAL, RemoteError),
]


@pytest.mark.parametrize(
    ("error", "code", "client_class"), CASES, ids=[type(case[0]).__name__ for case in CASES]
)
async def test_each_error_kind_crosses_the_wire(
    error: CacheClusterError, code: grpc.StatusCode, client_class: type[Exception]
) -> None:
    assert to_grpc_status(error) == code
    async with grpc_channel(
        (worker_pb2_grpc.add_WorkerServiceServicer_to_server, Worker(error))
    ) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStats(worker_pb2.GetStatsRequest())
    assert caught.value.code() == code
    assert caught.value.details() == str(error)
    mapped = error_from_rpc_error(caught.value)
    assert type(mapped) is client_class
    assert mapped.kind == error.kind
    assert str(mapped) == str(error)
    assert to_exit_code(mapped) == to_exit_code(error)


async def test_success_passes_through() -> None:
    async with grpc_channel(
        (worker_pb2_grpc.add_WorkerServiceServicer_to_server, Worker())
    ) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        reply = await stub.GetStats(worker_pb2.GetStatsRequest())
    assert (reply.worker_id, reply.block_count) == ("w1", 3)


async def test_unexpected_errors_are_logged_once_and_become_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with grpc_channel(
        (master_pb2_grpc.add_MasterServiceServicer_to_server, Master())
    ) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetRing(master_pb2.GetRingRequest())
    assert caught.value.code() == Code.INTERNAL
    assert "KeyError" in (caught.value.details() or "")
    assert "secret-token-123" not in (caught.value.details() or "")
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1
    assert "Master.GetRing" in logged[0].getMessage()
    assert "secret-token-123" in caplog.text  # the traceback stays on the server
    mapped = error_from_rpc_error(caught.value)
    assert isinstance(mapped, RemoteError)
    assert mapped.kind is ErrorKind.INTERNAL


async def test_client_streaming_method_maps_errors() -> None:
    async with grpc_channel(
        (master_pb2_grpc.add_MasterServiceServicer_to_server, Master())
    ) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        chunks = [master_pb2.ReportBlocksRequest(worker_id="w1", full=True, added=["a", "b"])]
        reply = await stub.ReportBlocks(iter(chunks))
        assert reply.block_count == 2
        chunks.append(master_pb2.ReportBlocksRequest(worker_id="w9", added=["c"]))
        with pytest.raises(NotFound, match="worker w9: not registered"), rpc_errors():
            await stub.ReportBlocks(iter(chunks))


async def test_abort_in_the_method_and_failed_downstream_calls_keep_their_code() -> None:
    unavailable = Worker(Unavailable("disk gone"))
    async with grpc_channel(
        (worker_pb2_grpc.add_WorkerServiceServicer_to_server, unavailable)
    ) as downstream:
        front = Worker()
        front.downstream = worker_pb2_grpc.WorkerServiceStub(downstream)
        add = worker_pb2_grpc.add_WorkerServiceServicer_to_server
        async with grpc_channel((add, front)) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=["abort"]))
            assert caught.value.code() == Code.RESOURCE_EXHAUSTED
            assert caught.value.details() == "aborted by the method"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=["x"]))
            assert caught.value.code() == Code.UNAVAILABLE
            assert caught.value.details() == "disk gone"


async def test_an_unimplemented_rpc_becomes_a_remote_error() -> None:
    async with grpc_channel(
        (worker_pb2_grpc.add_WorkerServiceServicer_to_server, Worker())
    ) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.LoadBlocks(worker_pb2.LoadBlocksRequest())
    assert caught.value.code() == Code.UNIMPLEMENTED
    with pytest.raises(RemoteError) as mapped:
        raise_from_rpc_error(caught.value)
    assert mapped.value.kind is ErrorKind.INTERNAL
    assert mapped.value.code == Code.UNIMPLEMENTED
    assert mapped.value.__cause__ is caught.value


class _Context:
    """Stands in for a ServicerContext where no RPC of ours streams from the server."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


async def test_server_streaming_methods_map_errors_after_some_replies() -> None:
    class Lister:
        @grpc_method
        async def Walk(self, request: int, context: object) -> AsyncIterator[int]:
            for value in range(request):
                yield value
            raise NotFound("listing ended early")

    context = _Context()
    seen: list[int] = []
    with pytest.raises(grpc.aio.AbortError):
        async for value in Lister().Walk(2, context):
            seen.append(value)
    assert seen == [0, 1]
    assert context.aborted == (Code.NOT_FOUND, "listing ended early")


def test_messages_travel_on_one_line() -> None:
    from cachecluster.common.grpc_errors import one_line

    assert one_line(NotFound("a\nb\t c")) == "a b c"
    assert one_line(NotFound()) == "NotFound"
    assert len(one_line(NotFound("x" * 5000))) == MAX_DETAILS


def test_decorating_twice_or_a_plain_function() -> None:
    class Plain:
        def Sync(self, request: int, context: object) -> int:
            return request

    with pytest.raises(TypeError, match="neither"):
        grpc_method(Plain.Sync)  # type: ignore[arg-type]
    wrapped = grpc_method(Worker.GetStats)
    assert grpc_method(wrapped) is wrapped


def test_builtin_exceptions_map_by_kind() -> None:
    assert to_grpc_status(FileNotFoundError("x")) == Code.NOT_FOUND
    assert to_grpc_status(TimeoutError()) == Code.UNAVAILABLE
    assert to_grpc_status(RuntimeError()) == Code.INTERNAL
