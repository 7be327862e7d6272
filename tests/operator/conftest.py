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


@pytest.fixture(scope="session")
def cluster():
    from emulator import Cluster
    c = Cluster().start()
    yield c
    c.stop()


def chart_objects(values: dict | None = None) -> list[dict]:
    """The Helm chart's objects for release "otus" in otus-system (helm-python-sdk renders it)."""
    import pathlib

    import yaml
    helm = pytest.importorskip("helm_python")
    chart = helm.Chart.load(str(pathlib.Path(__file__).resolve().parents[2] / "helm" / "otus"))
    out = chart.render(values or {}, name="otus", namespace="otus-system", is_install=True)
    return [d for path, text in out.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]


def install_chart_objects(cluster) -> None:
    """What `helm install` creates that the operator works with: its webhook configuration, the empty
    Secret for the shared certificate, the peering object."""
    from kubernetes import client
    c = cluster.client()
    for d in chart_objects():
        if d["kind"] == "MutatingWebhookConfiguration":
            client.AdmissionregistrationV1Api(c).create_mutating_webhook_configuration(d)
        elif d["kind"] == "Secret":
            client.CoreV1Api(c).create_namespaced_secret(d["metadata"]["namespace"], d)
        elif d["kind"] == "ClusterKopfPeering":
            client.CustomObjectsApi(c).create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", d)


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    from emulator import Operator
    from kubernetes import config
    from support import free_port

    from otus_operator import handlers, health, kube
    health.install()
    old = os.environ.get("KUBECONFIG")
    # the operator has an identity of its own, so that its calls can be told from the tests' own
    os.environ["KUBECONFIG"] = cluster.operator_kubeconfig  # kopf's login reads it, like in a real deployment
    from kubernetes.config import kube_config
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = cluster.operator_kubeconfig  # read at import, before this fixture
    config.load_kube_config(config_file=cluster.operator_kubeconfig)  # the handlers' client
    kube.reset()
    install_chart_objects(cluster)
    cfg = handlers.OperatorConfig(
        post_events=True,                        # the emulator names generateName objects (Events)
        webhook=True, webhook_addr="127.0.0.1", webhook_port=free_port(), webhook_namespace="otus-system",
        webhook_service="otus-webhook", webhook_config="otus-sidecar.otus.io", webhook_ca_secret="otus-webhook-ca",
        work_dir=str(tmp_path_factory.mktemp("operator")), status_interval_s=0.5,
        sidecar="auto")                          # the emulator says 1.26: regular containers
    op = Operator(cluster, cfg).start()
    yield op
    op.stop()
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old


@pytest.fixture()
def ns(cluster, operator) -> str:
    """A namespace of the test's own (the emulator needs no Namespace object for it)."""
    import uuid
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def api(cluster) -> dict:
    """The official client's APIs, as the tests' own identity (not the operator's)."""
    from kubernetes import client
    c = cluster.client()
    return {"custom": client.CustomObjectsApi(c), "core": client.CoreV1Api(c), "apps": client.AppsV1Api(c),
            "rbac": client.RbacAuthorizationV1Api(c), "adm": client.AdmissionregistrationV1Api(c)}


_checked = [0]


@pytest.fixture(autouse=True)
def operator_calls_are_allowed_by_its_rbac(request):
    """Every API call the operator makes during a test must be allowed by the ClusterRole the chart
    installs (otus_operator.rbac): a call the rules do not cover fails the test, as a real API server
    would refuse it with 403."""
    if "operator" not in request.fixturenames:
        yield
        return
    cluster = request.getfixturevalue("cluster")
    request.getfixturevalue("operator")
    from emulator import OPERATOR_USER, uncovered_calls
    yield
    start, _checked[0] = _checked[0], len(cluster.emulator.calls)   # the first test also checks start-up
    calls = cluster.calls(OPERATOR_USER, since=start)
    missing = uncovered_calls(calls)
    assert not missing, "API calls not allowed by the operator's RBAC rules:\n" + "\n".join(missing)
    wrote = cluster_scoped_writes(calls)
    assert not wrote, "the operator wrote cluster-scoped objects it does not own:\n" + "\n".join(wrote)


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def cluster_scoped_writes(calls) -> list[str]:
    """The operator's writes (any verb: create, server-side apply and other patches, update, delete) to
    cluster-scoped objects other than its own: the chart's webhook configuration (its CA bundle) and
    the kopf peering object, patched by name, and the node agents' identity ClusterRoleBindings, one
    per DaemonSet task, which it applies and deletes with the task (otus_operator.rbac grants exactly
    these). Any other cluster-scoped write would outlive `helm uninstall` or change what others own."""
    from otus_operator import rbac, render
    names = rbac.release_names("otus")       # the tests' release, as the operator fixture configures it
    own = {("mutatingwebhookconfigurations", "patch", names["webhook"]),
           ("clusterkopfpeerings", "patch", names["peering"])}
    binding = render.identity_binding_name("", "") + "-"    # otus-agent-identity-<namespace>-<task>
    out = []
    for c in calls:
        if c.verb not in WRITE_VERBS or c.namespace is not None or not c.resource:
            continue
        if (c.resource, c.verb, c.name) in own:
            continue
        if c.resource == "clusterrolebindings" and c.verb in ("patch", "delete") and (c.name or "").startswith(binding):
            continue
        out.append(f"{c.verb} {c.group or 'core'}/{c.resource} name={c.name} ({c.path})")
    return sorted(set(out))
