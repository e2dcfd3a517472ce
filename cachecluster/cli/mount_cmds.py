"""``cachecluster mount MOUNTPOINT`` and ``cachecluster unmount MOUNTPOINT`` (FUSE, read-only)."""

from __future__ import annotations

import argparse
from typing import Any

from cachecluster.client.cluster_view import DEFAULT_METADATA_TTL


def cmd_mount(args: argparse.Namespace) -> int:
    """Mount a view of the cluster: in the foreground, or detached with a log file."""
    from cachecluster.fuse.mount import (
        MountOptions,
        check_installed,
        mount_background,
        serve,
        view_prefix,
    )

    check_installed()
    options = MountOptions(
        mountpoint=args.mountpoint,
        prefix=view_prefix(args.namespace, args.dataset),
        master=args.master,
        token=args.token,
        metadata_ttl=args.metadata_ttl,
        direct_io=args.direct_io,
        log_file=args.log_file,
    )
    if args.foreground:
        from cachecluster.common.server_process import prepare_server_process

        prepare_server_process()
        serve(options)
        return 0
    pid = mount_background(options)
    print(f"mounted {options.prefix or 'every namespace'} at {args.mountpoint} (pid {pid})")
    return 0


def cmd_unmount(args: argparse.Namespace) -> int:
    """Unmount a mount made by ``cachecluster mount`` (or a stale one)."""
    from cachecluster.fuse.mount import unmount

    unmount(args.mountpoint)
    print(f"unmounted {args.mountpoint}")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mount`` and ``unmount``."""
    mount = sub.add_parser(
        "mount",
        help="mount datasets read-only with FUSE",
        description=(
            "Mount a read-only view: every namespace the token may read "
            "(MOUNT/NS/DATASET/...), one namespace with -n (MOUNT/DATASET/...), or one "
            "dataset with --dataset NS/NAME (MOUNT/...). Detaches and logs to a file "
            "unless --foreground; a stale mount at MOUNTPOINT is cleaned first."
        ),
    )
    mount.add_argument("mountpoint", help="the folder to mount on (created if missing)")
    view = mount.add_mutually_exclusive_group()
    view.add_argument("-n", "--namespace", help="show the datasets of this namespace")
    view.add_argument("--dataset", help="show one dataset, NS/NAME, at the root")
    mount.add_argument("--foreground", action="store_true", help="serve in this process")
    mount.add_argument("--master", help="master host:port (default: the local cluster)")
    mount.add_argument("--token", help="namespace token (default: $CACHECLUSTER_TOKEN)")
    mount.add_argument("--log-file", help="log file (default: <home>/mounts/<name>.log)")
    mount.add_argument(
        "--metadata-ttl",
        type=float,
        default=DEFAULT_METADATA_TTL,
        help="seconds a listing or status is reused, by the client and the kernel",
    )
    mount.add_argument(
        "--direct-io",
        action="store_true",
        help="bypass the page cache (streams read once; no mmap)",
    )
    mount.set_defaults(handler=cmd_mount)

    unmount = sub.add_parser("unmount", help="unmount a FUSE mount")
    unmount.add_argument("mountpoint")
    unmount.set_defaults(handler=cmd_unmount)
