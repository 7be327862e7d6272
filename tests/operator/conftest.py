"""One Kubernetes emulator and one real kopf operator for the operator tests of a session.

kopf keeps its handlers in a process-wide registry, so one operator serves
every test; tests use namespaces of their own.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

kopf = pytest.importorskip("kopf")
pytest.importorskip("kmock")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def cluster():
    from emulator import Cluster
    c = Cluster().start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    from emulator import Operator
    from kubernetes import config

    from otus_operator import handlers, kube
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = cluster.kubeconfig          # kopf's login reads it, like in a real deployment
    from kubernetes.config import kube_config
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = cluster.kubeconfig   # read at import, before this fixture ran
    config.load_kube_config(config_file=cluster.kubeconfig)  # the handlers' client
    kube.reset()
    handlers.CONFIG.post_events = False                   # kmock cannot generateName events
    handlers.CONFIG.webhook = True
    handlers.CONFIG.webhook_addr = "127.0.0.1"
    handlers.CONFIG.webhook_port = free_port()
    handlers.CONFIG.webhook_namespace = "otus-system"
    handlers.CONFIG.work_dir = str(tmp_path_factory.mktemp("operator"))
    handlers.CONFIG.status_interval_s = 0.5
    handlers.CONFIG.sidecar = "auto"                      # the emulator says 1.26: regular containers
    op = Operator(cluster).start()
    yield op
    op.stop()
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old
