"""The CSI node plugin (``cachecluster csi``): bind-mounts a dataset's FUSE path into pods.

Layers, each a module: ``config`` (flags, validated), ``mountinfo`` (what the
kernel has mounted), ``binder`` (bind mounts through util-linux ``mount``),
``state`` (the published targets, kept in a file), ``publisher`` (publish,
unpublish and repair, under one lock), ``identity`` and ``node`` (the CSI gRPC
services, thin translations), ``rebind`` (the periodic repair of targets whose
FUSE process died) and ``server`` (the gRPC server on a Unix socket).
"""
