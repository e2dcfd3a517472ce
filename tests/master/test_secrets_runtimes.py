"""Secrets and runtimes on the master: stored 0600, resolved only for GetMount, reloaded."""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.api import CacheRuntimeSpec, DatasetSpec
from cachecluster.common.errors import ConfigError
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.metadata import MetadataCache
from cachecluster.master.runtimes import RUNTIMES_FILE, RuntimeRegistry, binding_of
from cachecluster.master.secrets import SECRETS_FILE, SecretStore
from cachecluster.master.service import DatasetServicer, MetadataServicer, ResourceServicer
from cachecluster.protos import master_pb2, master_pb2_grpc, resources_pb2, resources_pb2_grpc
from cachecluster.ufs.registry import create_backend
from tests.grpc_helpers import grpc_channel

KEY_ID = "AKIDNEVERPRINTED"
KEY_SECRET = "VALUENEVERPRINTED"


def ref(namespace: str = "share", name: str = "shared-dataset") -> master_pb2.DatasetRef:
    return master_pb2.DatasetRef(namespace=namespace, name=name)


def dataset_spec(data: Path) -> dict[str, Any]:
    return {
        "mounts": [
            {
                "mountPoint": f"local://{data}",
                "name": "hadoop",
                "path": "/",
                "options": {"fs.local.note": "plain", "my.password": "inline-pw"},
                "encryptOptions": [
                    {
                        "name": "fs.oss.accessKeyId",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "id"}},
                    }
                ],
            }
        ],
        "sharedEncryptOptions": [
            {
                "name": "fs.oss.accessKeySecret",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "secret"}},
            }
        ],
    }


def stores(home: Path) -> DatasetRegistry:
    return DatasetRegistry(home, secrets=SecretStore(home), runtimes=RuntimeRegistry(home))


@dataclasses.dataclass
class Master:
    resources: resources_pb2_grpc.ResourceServiceStub
    datasets: master_pb2_grpc.DatasetServiceStub
    metadata: master_pb2_grpc.MetadataServiceStub
    registry: DatasetRegistry
    home: Path


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    home = tmp_path / "master"
    registry = stores(home)
    # The options here are made up: open every mount as a plain local UFS.
    metadata = MetadataCache(
        registry, sync_interval=30, backend_factory=lambda uri, options: create_backend(uri)
    )
    try:
        async with grpc_channel(
            (
                resources_pb2_grpc.add_ResourceServiceServicer_to_server,
                ResourceServicer(registry, metadata),
            ),
            (
                master_pb2_grpc.add_DatasetServiceServicer_to_server,
                DatasetServicer(registry, metadata),
            ),
            (master_pb2_grpc.add_MetadataServiceServicer_to_server, MetadataServicer(metadata)),
        ) as channel:
            yield Master(
                resources_pb2_grpc.ResourceServiceStub(channel),
                master_pb2_grpc.DatasetServiceStub(channel),
                master_pb2_grpc.MetadataServiceStub(channel),
                registry,
                home,
            )
    finally:
        await metadata.close()


async def test_secret_values_reach_get_mount_only(master: Master, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spec = json.dumps(dataset_spec(data)).encode()

    # Without the secret, the dataset is refused, naming the field.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=spec)
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "spec.sharedEncryptOptions[0].valueFrom.secretKeyRef: secret share/creds does not exist"
        in (error.value.details() or "")
    )
    assert master.registry.datasets() == []

    put = resources_pb2.PutSecretRequest(
        ref=ref("share", "creds"), data={"id": KEY_ID, "secret": KEY_SECRET}
    )
    answer = await master.resources.PutSecret(put)
    assert (answer.result, list(answer.keys)) == ("created", ["id", "secret"])
    assert (await master.resources.PutSecret(put)).result == "unchanged"
    path = master.home / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    applied = await master.datasets.ApplyDataset(
        master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=spec)
    )
    answers = [
        applied,
        await master.datasets.GetDataset(master_pb2.GetDatasetRequest(ref=ref())),
        await master.datasets.ListDatasets(master_pb2.ListDatasetsRequest()),
        await master.resources.ListSecrets(resources_pb2.ListSecretsRequest()),
    ]
    for message in answers:
        text = str(message)
        assert KEY_ID not in text and KEY_SECRET not in text and "inline-pw" not in text
    public = json.loads(applied.dataset.spec_json)
    assert public["mounts"][0]["options"] == {"fs.local.note": "plain", "my.password": "***"}
    assert (
        public["mounts"][0]["encryptOptions"] == dataset_spec(data)["mounts"][0]["encryptOptions"]
    )

    (mount,) = master.registry.get("share", "shared-dataset").mounts
    got = await master.metadata.GetMount(master_pb2.GetMountRequest(mount_id=mount.mount_id))
    assert dict(got.mount.options) == {
        "fs.local.note": "plain",
        "my.password": "inline-pw",
        "fs.oss.accessKeyId": KEY_ID,
        "fs.oss.accessKeySecret": KEY_SECRET,
    }

    # A new value reaches GetMount; the secret cannot go while a dataset uses it.
    put.data["id"] = "ROTATED"
    assert (await master.resources.PutSecret(put)).result == "configured"
    got = await master.metadata.GetMount(master_pb2.GetMountRequest(mount_id=mount.mount_id))
    assert got.mount.options["fs.oss.accessKeyId"] == "ROTATED"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.resources.DeleteSecret(
            resources_pb2.DeleteSecretRequest(ref=ref("share", "creds"))
        )
    assert "used by the encryptOptions of share/shared-dataset" in (error.value.details() or "")

    # A second registry over the same home resolves the same options.
    reloaded = stores(master.home)
    assert (reloaded.secrets.load(), reloaded.runtimes.load(), reloaded.load()) == (1, 0, 1)
    assert reloaded.mount(mount.mount_id).options["fs.oss.accessKeyId"] == "ROTATED"


async def test_missing_secret_key_names_the_keys(master: Master, tmp_path: Path) -> None:
    await master.resources.PutSecret(
        resources_pb2.PutSecretRequest(ref=ref("share", "creds"), data={"id": "x"})
    )
    spec = json.dumps(dataset_spec(tmp_path)).encode()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=spec)
        )
    assert (
        "spec.sharedEncryptOptions[0].valueFrom.secretKeyRef: secret share/creds has no key "
        "'secret' (keys: id)"
    ) in (error.value.details() or "")


RUNTIME = {
    "replicas": 1,
    "tieredstore": {
        "levels": [
            {"mediumtype": "MEM", "path": "/dev/shm", "quota": "4Gi", "high": "0.95", "low": "0.7"}
        ]
    },
}


async def test_runtimes_apply_bind_and_persist(master: Master, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    plain = json.dumps({"mounts": [{"mountPoint": f"local://{data}"}]}).encode()
    await master.datasets.ApplyDataset(master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=plain))
    assert master.registry.get("share", "shared-dataset").runtime_ref == "default"

    request = resources_pb2.ApplyRuntimeRequest(
        ref=ref(),
        kind="JindoRuntime",
        api_version="data.fluid.io/v1alpha1",
        spec_json=json.dumps(RUNTIME).encode(),
    )
    applied = await master.resources.ApplyRuntime(request)
    assert applied.result == "created"
    assert list(applied.runtime.datasets) == ["share/shared-dataset"]
    assert master.registry.get("share", "shared-dataset").runtime == ("share", "shared-dataset")
    assert (await master.resources.ApplyRuntime(request)).result == "unchanged"
    request.spec_json = json.dumps({**RUNTIME, "replicas": 2}).encode()
    again = await master.resources.ApplyRuntime(request)
    assert (again.result, again.runtime.generation) == ("configured", 2)
    assert json.loads(again.runtime.spec_json)["replicas"] == 2
    assert stat.S_IMODE((master.home / RUNTIMES_FILE).stat().st_mode) == 0o600

    listed = await master.resources.ListRuntimes(
        resources_pb2.ListRuntimesRequest(namespace="share")
    )
    assert [(r.ref.name, r.kind) for r in listed.runtimes] == [("shared-dataset", "JindoRuntime")]

    bad = resources_pb2.ApplyRuntimeRequest(
        ref=ref(),
        kind="JindoRuntime",
        api_version="data.fluid.io/v1alpha1",
        spec_json=b'{"replicas": -1}',
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.resources.ApplyRuntime(bad)
    assert "spec.replicas: -1 is not an integer >= 1" in (error.value.details() or "")

    reloaded = stores(master.home)
    assert reloaded.runtimes.load() == 1 and reloaded.load() == 1
    assert reloaded.runtimes.get("share", "shared-dataset").spec.replicas == 2
    assert reloaded.get("share", "shared-dataset").runtime == ("share", "shared-dataset")

    deleted = await master.resources.DeleteRuntime(resources_pb2.DeleteRuntimeRequest(ref=ref()))
    assert deleted.deleted
    assert master.registry.get("share", "shared-dataset").runtime_ref == "default"


def test_binding_rule() -> None:
    spec = DatasetSpec.from_dict({"mounts": [{"mountPoint": "s3://b/x"}]})
    named = DatasetSpec.from_dict(
        {"mounts": [{"mountPoint": "s3://b/x"}], "runtimes": [{"name": "r", "namespace": "o"}]}
    )
    assert binding_of("ns", "d", spec, set()) == ("", "")
    assert binding_of("ns", "d", spec, {("ns", "d")}) == ("ns", "d")
    assert binding_of("ns", "d", named, {("ns", "d")}) == ("o", "r")


def test_secret_store_errors_and_repr(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.put("ns", "s", {"k": "hidden-value"})
    record = store.get("ns", "s")
    assert "hidden-value" not in repr(record)
    with pytest.raises(ConfigError, match="secret ns/t does not exist"):
        store.value("ns", "t", "k")
    (tmp_path / SECRETS_FILE).chmod(0o644)
    again = SecretStore(tmp_path)
    assert again.load() == 1
    assert stat.S_IMODE((tmp_path / SECRETS_FILE).stat().st_mode) == 0o600
    assert again.value("ns", "s", "k") == "hidden-value"


def test_runtime_spec_round_trip_through_the_file(tmp_path: Path) -> None:
    registry = RuntimeRegistry(tmp_path)
    spec = CacheRuntimeSpec.from_dict(RUNTIME)
    registry.apply("ns", "r", "CacheRuntime", "cachecluster.io/v1alpha1", spec)
    again = RuntimeRegistry(tmp_path)
    again.load()
    assert again.get("ns", "r").spec == spec


async def test_masked_spec_sent_back_keeps_the_secret(master: Master, tmp_path: Path) -> None:
    """``dataset add`` reads the (masked) spec and applies it again with a new mount."""
    options = {"fs.local.note": "plain", "my.password": "inline-pw"}
    spec = {"mounts": [{"mountPoint": f"local://{tmp_path}", "name": "a", "options": options}]}
    first = await master.datasets.ApplyDataset(
        master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=json.dumps(spec).encode())
    )
    masked = json.loads(first.dataset.spec_json)
    assert masked["mounts"][0]["options"]["my.password"] == "***"
    again = await master.datasets.ApplyDataset(
        master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=json.dumps(masked).encode())
    )
    assert again.dataset.generation == first.dataset.generation
    (mount,) = master.registry.get("share", "shared-dataset").mounts
    assert mount.options["my.password"] == "inline-pw"
