"""The master with a cluster secret: tokens, namespaces and capabilities."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.common import auth
from cachecluster.common.grpc_auth import auth_interceptors
from cachecluster.master import access
from cachecluster.master.config import MasterConfig
from cachecluster.master.datasets import DatasetRecord, MountInfo
from cachecluster.master.server import MasterServer
from cachecluster.protos import auth_pb2, auth_pb2_grpc, master_pb2, master_pb2_grpc

SECRET = bytes(range(32))


@pytest.fixture
async def secure_master(tmp_path: Path) -> AsyncIterator[MasterServer]:
    for ns in ("a", "b"):
        (tmp_path / "ufs" / ns / "sub").mkdir(parents=True)
        (tmp_path / "ufs" / ns / "sub" / "f.bin").write_bytes(b"x" * 10)
    server = MasterServer(MasterConfig(home=tmp_path / "master", cluster_secret=SECRET))
    await server.start()
    try:
        admin = channel(server, auth.issue_token(SECRET, auth.ADMIN_NAMESPACE))
        stub = master_pb2_grpc.DatasetServiceStub(admin)
        for ns in ("a", "b"):
            spec = {"mounts": [{"mountPoint": f"local://{tmp_path / 'ufs' / ns}", "name": "m"}]}
            await stub.ApplyDataset(
                master_pb2.ApplyDatasetRequest(
                    ref=master_pb2.DatasetRef(namespace=ns, name="ds"),
                    spec_json=json.dumps(spec).encode(),
                )
            )
        await admin.close()
        yield server
    finally:
        await server.stop()


def channel(server: MasterServer, token: str | None) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{server.grpc_port}", interceptors=auth_interceptors(lambda: token)
    )


def ref(ns: str, name: str = "ds") -> master_pb2.DatasetRef:
    return master_pb2.DatasetRef(namespace=ns, name=name)


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_no_token_or_a_bad_one_is_refused(secure_master: MasterServer) -> None:
    for token in (None, "garbage", auth.issue_token(bytes(32), "a")):
        async with channel(secure_master, token) as chan:
            stub = master_pb2_grpc.DatasetServiceStub(chan)
            code = await code_of(stub.ListDatasets(master_pb2.ListDatasetsRequest()))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            ring = master_pb2_grpc.MasterServiceStub(chan).GetRing(master_pb2.GetRingRequest())
            assert await code_of(ring) == grpc.StatusCode.UNAUTHENTICATED


async def test_a_namespace_sees_only_its_own_datasets(secure_master: MasterServer) -> None:
    async with channel(secure_master, auth.issue_token(SECRET, "a")) as chan:
        datasets = master_pb2_grpc.DatasetServiceStub(chan)
        metadata = master_pb2_grpc.MetadataServiceStub(chan)
        listed = await datasets.ListDatasets(master_pb2.ListDatasetsRequest())
        assert [(d.ref.namespace, d.ref.name) for d in listed.datasets] == [("a", "ds")]
        listed = await datasets.ListDatasets(master_pb2.ListDatasetsRequest(namespace="b"))
        assert list(listed.datasets) == []
        status = await metadata.GetStatus(master_pb2.GetStatusRequest(dataset=ref("a"), path="sub"))
        assert status.status.is_dir
        # b's dataset is NotFound, exactly like a dataset that does not exist.
        calls = [
            metadata.GetStatus(master_pb2.GetStatusRequest(dataset=ref("b"), path="sub")),
            metadata.ListStatus(master_pb2.ListStatusRequest(dataset=ref("b"))),
            datasets.GetDataset(master_pb2.GetDatasetRequest(ref=ref("b"))),
            datasets.DeleteDataset(master_pb2.DeleteDatasetRequest(ref=ref("b"))),
            auth_pb2_grpc.AuthServiceStub(chan).IssueCapability(
                auth_pb2.IssueCapabilityRequest(dataset=ref("b"))
            ),
        ]
        for call in calls:
            assert await code_of(call) == grpc.StatusCode.NOT_FOUND
        apply_b = datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(ref=ref("b", "new"), spec_json=b'{"mounts": []}')
        )
        assert await code_of(apply_b) == grpc.StatusCode.PERMISSION_DENIED
        reference = {"mounts": [{"mountPoint": "dataset://b/ds", "name": "r"}]}
        apply_ref = datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(
                ref=ref("a", "r"), spec_json=json.dumps(reference).encode()
            )
        )
        assert await code_of(apply_ref) == grpc.StatusCode.PERMISSION_DENIED
        # Mount credentials are for workers only.
        mount_id = status.status.mount_id
        get_mount = metadata.GetMount(master_pb2.GetMountRequest(mount_id=mount_id))
        assert await code_of(get_mount) == grpc.StatusCode.PERMISSION_DENIED


async def test_capability_covers_the_datasets_mounts(secure_master: MasterServer) -> None:
    async with channel(secure_master, auth.issue_token(SECRET, "a")) as chan:
        answer = await auth_pb2_grpc.AuthServiceStub(chan).IssueCapability(
            auth_pb2.IssueCapabilityRequest(dataset=ref("a"))
        )
    assert answer.required and answer.namespace == "a"
    cap = auth.verify_capability(SECRET, answer.capability)
    mount = secure_master.datasets.get("a", "ds").mounts[0]
    assert dict(cap.mounts) == {mount.mount_id: ""}
    assert answer.expires_at_ms > 0


async def test_workers_system_token_may_get_mounts(secure_master: MasterServer) -> None:
    mount = secure_master.datasets.get("b", "ds").mounts[0]
    async with channel(secure_master, auth.issue_token(SECRET, auth.SYSTEM_NAMESPACE)) as chan:
        answer = await master_pb2_grpc.MetadataServiceStub(chan).GetMount(
            master_pb2.GetMountRequest(mount_id=mount.mount_id)
        )
    assert answer.mount.uri == mount.uri


async def test_open_master_needs_no_capability(tmp_path: Path) -> None:
    server = MasterServer(MasterConfig(home=tmp_path))
    await server.start()
    try:
        server.datasets.apply("a", "ds", {"mounts": [{"mountPoint": f"local://{tmp_path}"}]})
        async with channel(server, None) as chan:
            answer = await auth_pb2_grpc.AuthServiceStub(chan).IssueCapability(
                auth_pb2.IssueCapabilityRequest(dataset=ref("a"))
            )
        assert not answer.required and not answer.capability
    finally:
        await server.stop()


class _Registry:
    def __init__(self, *records: DatasetRecord) -> None:
        self.records = {(r.namespace, r.name): r for r in records}

    def get(self, namespace: str, name: str) -> DatasetRecord:
        return self.records[(namespace, name)]

    def datasets(self, namespace: str = "") -> list[DatasetRecord]:
        return list(self.records.values())


def _mount(mount_id: str, path: str) -> MountInfo:
    return MountInfo(mount_id, "src", "ds", mount_id, f"local:///{mount_id}", path, {})


@pytest.mark.parametrize(
    ("subpath", "expected"),
    [
        ("", {"root": "", "deep": ""}),
        ("x/y", {"root": "x/y"}),
        ("data", {"root": "data", "deep": ""}),
        ("data/more/z", {"root": "data/more/z", "deep": "z"}),
    ],
)
def test_reference_capability_is_limited_to_the_subpath(
    subpath: str, expected: dict[str, str]
) -> None:
    source = DatasetRecord(
        "src", "ds", {"mounts": []}, (_mount("root", ""), _mount("deep", "data/more")), 1, 0
    )
    point = "dataset://src/ds" + (f"/{subpath}" if subpath else "")
    reference = DatasetRecord("ref", "r", {"mounts": [{"mountPoint": point}]}, (), 1, 0)
    registry: Any = _Registry(source, reference)
    assert access.capability_mounts(registry, reference) == expected


async def test_dot_dot_escapes_are_refused_by_the_master(secure_master: MasterServer) -> None:
    async with channel(secure_master, auth.issue_token(SECRET, "a")) as chan:
        metadata = master_pb2_grpc.MetadataServiceStub(chan)
        for path in ("../b/ds/sub/f.bin", "sub/../../b", "/../x", "sub/..\\..\\x"):
            calls = [
                metadata.GetStatus(master_pb2.GetStatusRequest(dataset=ref("a"), path=path)),
                metadata.ListStatus(master_pb2.ListStatusRequest(dataset=ref("a"), path=path)),
            ]
            for call in calls:
                assert await code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
        inside = await metadata.GetStatus(
            master_pb2.GetStatusRequest(dataset=ref("a"), path="sub/../sub/./f.bin")
        )
        assert inside.status.path == "sub/f.bin"
