"""Running under Kubernetes: a task from a mounted ConfigMap, status written onto the CaptureTask, and
the records' identity (``identity``: which pod, workload, node or Service holds an address).

Only the Kubernetes API client is used here (never the operator's code): the
contract between agent and operator is the CaptureTask's ``status.agents``
map and the task file, both plain data.
"""
