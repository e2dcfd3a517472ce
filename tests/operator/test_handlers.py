"""The handlers' parts that run here: kopf's registry, error mapping, API-error
translation, and the master calls against a real local cluster (auth on) and a
real S3 server. Without an API server, the kopf loop itself is not run."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from cachecluster.cli.main import build_parser
from cachecluster.common.errors import (
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from cachecluster.local.cluster import LocalCluster
from cachecluster.operator import handlers, kube, master_calls, naming, status
from cachecluster.operator.dataset_objects import plan_dataset
from tests.operator.schemas import validate_custom
from tests.servers.seaweed import SeaweedS3

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"
BUCKET = "operator-bucket"


def test_registry_lists_every_handler() -> None:
    registry = handlers.REGISTRY
    registered = {
        (h.selector.any_name if h.selector else None, h.reason, h.id)
        for h in registry._changing.get_all_handlers()
    }
    for plural, handler in (
        ("datasets", "reconcile_dataset"),
        ("cacheruntimes", "reconcile_runtime"),
        ("dataloads", "reconcile_dataload"),
    ):
        assert (plural, kopf.Reason.CREATE, handler) in registered
        assert (plural, kopf.Reason.UPDATE, f"{handler}/spec") in registered
        assert (plural, None, handler) in registered  # resume
    assert ("datasets", kopf.Reason.DELETE, "delete_dataset") in registered
    assert ("dataloads", kopf.Reason.DELETE, "delete_dataload") in registered
    timers = {h.selector.any_name for h in registry._spawning.get_all_handlers() if h.selector}
    assert timers == {"datasets", "cacheruntimes", "dataloads"}
    for changing in registry._changing.get_all_handlers():
        assert changing.selector is not None
        assert (changing.selector.group, changing.selector.version) == (
            naming.GROUP,
            naming.VERSION,
        )
    assert [h.id for h in registry._activities.get_all_handlers()] == ["startup"]


def test_invalid_specs_are_permanent_the_rest_temporary() -> None:
    permanent = handlers.kopf_error(ConfigError("Dataset a/b: spec.mounts", "must be a list"))
    assert isinstance(permanent, kopf.PermanentError)
    assert str(permanent) == "Dataset a/b: spec.mounts: must be a list"
    assert isinstance(handlers.kopf_error(InvalidArgument("x")), kopf.PermanentError)
    for error in (NotFound("secret"), Unavailable("master"), PermissionDenied("token")):
        temporary = handlers.kopf_error(error)
        assert isinstance(temporary, kopf.TemporaryError)
        assert temporary.delay == handlers.RETRY_DELAY_S


class _ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"({status})\nReason: whatever\nHTTP response body: {{...}}")
        self.status = status


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (404, NotFound),
        (403, PermissionDenied),
        (422, InvalidArgument),
        (500, Unavailable),
        (503, Unavailable),
    ],
)
def test_api_errors_become_ours(code: int, kind: type[Exception]) -> None:
    error = kube.translate(_ApiError(code), "apply Job share/x")
    assert type(error) is kind
    assert str(error).startswith("apply Job share/x: ") and "\n" not in str(error)


def test_the_kubernetes_clients_own_errors_are_translated() -> None:
    from kubernetes.client.exceptions import ApiException

    with (
        pytest.raises(NotFound, match=r"^get Secret share/s: "),
        kube.api_errors("get Secret share/s"),
    ):
        raise ApiException(status=404, reason="Not Found")
    with pytest.raises(Unavailable, match="refused"), kube.api_errors("list Job"):
        raise ConnectionRefusedError("connection refused")


def test_secret_data_is_decoded_and_bad_values_named() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "share"},
        "data": {"k": base64.b64encode(b"value").decode()},
    }
    assert kube.decode_secret(secret) == {"k": "value"}
    secret["data"] = {"k": base64.b64encode(b"\xff").decode()}
    with pytest.raises(InvalidArgument, match=r"Secret share/s: key 'k' is not UTF-8 text"):
        kube.decode_secret(secret)


def test_operator_command_needs_a_scope() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["operator"])
    args = parser.parse_args(["operator", "-n", "share", "-n", "ref"])
    assert args.namespace == ["share", "ref"] and not args.all_namespaces
    assert parser.parse_args(["operator", "-A"]).all_namespaces


# ------------------------------------------------------------------ with a real master


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> SeaweedS3:
    s3_server.create_bucket(BUCKET)
    client = s3_server.client()
    for name, size in (("bert/a.bin", 3000), ("bert/sub/b.bin", 5000)):
        client.put_object(Bucket=BUCKET, Key=name, Body=b"x" * size)
    return s3_server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(
        tmp_path_factory.mktemp("op") / "home", workers=1, block_size="1Mi", auth=True
    )
    with local:
        yield local


def _bodies(s3: SeaweedS3) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, str]]]:
    """The examples' shared and ref datasets, pointed at the S3 server, as the API returns them."""
    shared = next(
        d
        for d in yaml.safe_load_all((EXAMPLES / "10-share-dataset.yaml").read_text())
        if d["kind"] == "Dataset"
    )
    mount = shared["spec"]["mounts"][0]
    mount["mountPoint"] = f"s3://{BUCKET}/bert"
    mount["options"] = {"fs.s3.endpoint": s3.endpoint, "fs.s3.pathStyle": "true"}
    keys = ("fs.s3.accessKeyId", "fs.s3.accessKeySecret")
    for option, key in zip(mount["encryptOptions"], keys, strict=True):
        option["name"] = option["valueFrom"]["secretKeyRef"]["key"] = key
    shared["metadata"]["uid"] = "uid-shared"
    ref = yaml.safe_load((EXAMPLES / "20-ref-dataset.yaml").read_text())
    ref["metadata"]["uid"] = "uid-ref"
    secrets = {
        "dataset-secret": {
            "fs.s3.accessKeyId": s3.access_key,
            "fs.s3.accessKeySecret": s3.secret_key,
        }
    }
    return shared, ref, secrets


def _cluster_secret_hex(cluster: LocalCluster) -> str:
    return cluster.secret_file.read_text().strip()


def test_datasets_registered_on_a_real_master(cluster: LocalCluster, s3: SeaweedS3) -> None:
    shared, ref, secrets = _bodies(s3)
    token = master_calls.admin_token(_cluster_secret_hex(cluster), ("share", "shared-dataset"))
    address = cluster.master_address

    async def scenario() -> None:
        ref_plan = plan_dataset(ref, source=shared)
        with pytest.raises(NotFound, match="share/shared-dataset is not registered on the master"):
            await master_calls.register_dataset(address, token, ref_plan)
        plan = plan_dataset(shared, secrets=secrets)
        assert await master_calls.register_dataset(address, token, plan) == "created"
        assert await master_calls.register_dataset(address, token, plan) == "unchanged"
        assert await master_calls.register_dataset(address, token, ref_plan) == "created"

        figures = None
        for _ in range(100):
            figures = await master_calls.dataset_status(address, token, "share", "shared-dataset")
            if figures.ufs_total_bytes >= 0:
                break
            await asyncio.sleep(0.1)
        assert figures is not None
        got = status.dataset_status(figures, generation=1)
        assert got["ufsTotalBytes"] == 8000 and got["ufsTotal"] == "7.81KiB"
        assert got["fileNum"] == "2" and got["phase"] == "Bound"
        assert s3.secret_key not in repr(got)
        validate_custom({**shared, "status": got})

        with pytest.raises(InvalidArgument, match="referenced by ref/ref-dataset"):
            await master_calls.delete_dataset(address, token, "share", "shared-dataset")
        assert await master_calls.delete_dataset(address, token, "ref", "ref-dataset") is True
        assert await master_calls.delete_dataset(address, token, "share", "shared-dataset") is True
        assert await master_calls.delete_dataset(address, token, "share", "shared-dataset") is False
        assert await master_calls.dataload_record(address, token, "share", "nothing") is None

    asyncio.run(scenario())


def test_a_wrong_cluster_secret_is_refused(cluster: LocalCluster, s3: SeaweedS3) -> None:
    shared, _, secrets = _bodies(s3)
    wrong = master_calls.admin_token("ab" * 32, ("share", "shared-dataset"))
    plan = plan_dataset(shared, secrets=secrets)
    with pytest.raises(PermissionDenied):
        asyncio.run(master_calls.register_dataset(cluster.master_address, wrong, plan))
    with pytest.raises(ConfigError, match=r"Secret share/shared-dataset-cluster-secret"):
        master_calls.admin_token("not hex", ("share", "shared-dataset"))


def test_a_namespace_token_cannot_register_another_namespace(
    cluster: LocalCluster, s3: SeaweedS3
) -> None:
    shared, _, secrets = _bodies(s3)
    other = copy.deepcopy(shared)
    other["metadata"]["namespace"] = "elsewhere"
    token = cluster.token("share")
    with pytest.raises(PermissionDenied):
        asyncio.run(
            master_calls.register_dataset(
                cluster.master_address, token, plan_dataset(other, secrets=secrets)
            )
        )


def _as_kubernetes_runs(text: str, cluster: LocalCluster) -> str:
    """What the container runs: Kubernetes turns "$$" into "$"; the cluster secret and the
    master are this test's instead of the pod's mounted file and Service."""
    text = text.replace("$$", "$").replace(naming.CLUSTER_SECRET_FILE, str(cluster.secret_file))
    return text.replace(naming.master_address("shared-dataset", "share"), cluster.master_address)


def test_the_load_pod_command_runs_a_dataload_on_a_real_master(
    cluster: LocalCluster, s3: SeaweedS3, tmp_path: Path
) -> None:
    """The Job's shell script, run as the pod would run it, with the real CLI."""
    import os
    import subprocess
    import sys

    from cachecluster.operator.dataload_objects import desired_dataload_objects

    shared, _, secrets = _bodies(s3)
    token = master_calls.admin_token(_cluster_secret_hex(cluster), ("share", "shared-dataset"))
    plan = plan_dataset(shared, secrets=secrets)
    asyncio.run(master_calls.register_dataset(cluster.master_address, token, plan))
    load = yaml.safe_load((EXAMPLES / "30-dataload.yaml").read_text())
    load["metadata"]["uid"] = "uid-load"
    (job,) = desired_dataload_objects(load, ("share", "shared-dataset"))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    script = _as_kubernetes_runs(container["command"][2], cluster)
    env = dict(os.environ, HOME=str(tmp_path))
    env.pop("CACHECLUSTER_TOKEN", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DATALOAD"] = _as_kubernetes_runs(container["env"][0]["value"], cluster)
    for run in (1, 2):  # the second run replaces the first (a CronJob's next tick)
        done = subprocess.run(
            [*container["command"][:2], script],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (run, done.stdout, done.stderr)
        assert "dataload share/shared-dataset-warmup Complete" in done.stdout, done.stdout
    record = asyncio.run(
        master_calls.dataload_record(
            cluster.master_address, token, "share", "shared-dataset-warmup"
        )
    )
    assert record is not None and record.status.phase == "Complete"
    assert record.status.runs == 1  # deleted, then applied again: a fresh record each run
    assert record.status.bytes_done == 8000
    got = status.dataload_status(
        {
            "metadata": {"name": "x"},
            "status": {
                "succeeded": 1,
                "startTime": "2026-11-22T18:00:00Z",
                "completionTime": "2026-11-22T18:00:05Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            },
        },
        master=record,
    )
    assert (got["phase"], got["progress"], got["duration"]) == ("Complete", "100.0%", "5s")
    asyncio.run(
        master_calls.delete_dataload(
            cluster.master_address, token, "share", "shared-dataset-warmup"
        )
    )
    asyncio.run(
        master_calls.delete_dataset(cluster.master_address, token, "share", "shared-dataset")
    )


def test_operator_without_a_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(HOME=str(tmp_path), KUBECONFIG=str(tmp_path / "missing-kubeconfig"))
    done = subprocess.run(
        [sys.executable, "-m", "cachecluster.cli.main", "operator", "-A"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cachecluster operator: no Kubernetes API to talk to")
