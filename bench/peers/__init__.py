"""The peer suite (issue 6): cachecluster against what users would mount instead.

``python -m bench`` runs it (see :mod:`bench.peers.suite`). One module per
system (:mod:`bench.peers.direct`, :mod:`bench.peers.fsspec_cache`,
:mod:`bench.peers.rclone`, :mod:`bench.peers.s3fs_fuse`,
:mod:`bench.peers.cachecluster_peer`) behind the interface of
:mod:`bench.peers.base`; the data in :mod:`bench.peers.data`, the workloads in
:mod:`bench.peers.workloads`, the output in :mod:`bench.peers.report`.
"""
