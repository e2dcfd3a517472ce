"""Generated gRPC modules of the control plane (package ``cachecluster.v1``).

The sources are ``protos/*.proto`` at the top of the repository; regenerate
with ``python -m cachecluster.protos.generate`` and commit the result. Import
the modules directly: ``from cachecluster.protos import worker_pb2,
worker_pb2_grpc``.
"""
