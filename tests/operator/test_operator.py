"""The real kopf operator against the Kubernetes emulator: both modes, status roll-up, webhook, cleanup."""
from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.request
import uuid

import jsonpatch
import yaml
from support import G, P, V, agent_report, cond, create, example, get, gone, status, validate_k8s, wait_for


def test_daemonset_mode_lifecycle(api, ns):
    create(api, ns, example("daemonset"))
    ds = wait_for(lambda: api["apps"].read_namespaced_daemon_set("otus-edge-sip", ns, _preload_content=False),
                  what="the DaemonSet")
    ds = json.loads(ds.data)
    pod = ds["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "otus-edge-sip" and pod["hostNetwork"] is True
    validate_k8s(ds)
    cm = json.loads(api["core"].read_namespaced_config_map("otus-edge-sip", ns, _preload_content=False).data)
    validate_k8s(cm)
    assert yaml.safe_load(cm["data"]["task.yaml"])["workers"] == 2 and cm["data"]["suspend"] == "false"
    role = json.loads(api["rbac"].read_namespaced_role("otus-edge-sip", ns, _preload_content=False).data)
    assert all(r["resourceNames"] in (["edge-sip"], ["otus-edge-sip"]) for r in role["rules"])  # its task, its file
    binding = json.loads(api["rbac"].read_namespaced_role_binding("otus-edge-sip", ns, _preload_content=False).data)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "otus-edge-sip", "namespace": ns}]
    api["core"].read_namespaced_service_account("otus-edge-sip", ns)
    svc = json.loads(api["core"].read_namespaced_service("otus-edge-sip-metrics", ns, _preload_content=False).data)
    validate_k8s(svc)
    assert svc["spec"]["selector"] == {"otus.io/capturetask": "edge-sip"}
    assert ds["spec"]["template"]["metadata"]["labels"]["otus.io/capturetask"] == "edge-sip"

    st = wait_for(lambda: status(api, ns, "edge-sip").get("phase") == "Pending" and status(api, ns, "edge-sip"),
                  what="phase Pending")
    assert st["mode"] == "DaemonSet" and cond(st, "Ready")["status"] == "False"

    # the DaemonSet controller would say two nodes; the emulator has none, so the test says it
    api["apps"].patch_namespaced_daemon_set_status("otus-edge-sip", ns, {"status": {
        "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 2}})
    agent_report(api, ns, "edge-sip", "agent-a", packets=1000, sipMessages=40)
    st = wait_for(lambda: status(api, ns, "edge-sip").get("readyAgents") == 1 and status(api, ns, "edge-sip"),
                  what="one ready agent")
    assert st["phase"] == "Running" and cond(st, "Ready")["status"] == "False"   # 1 of 2 nodes
    agent_report(api, ns, "edge-sip", "agent-b", packets=500, sipMessages=10)
    st = wait_for(lambda: cond(status(api, ns, "edge-sip"), "Ready").get("status") == "True"
                  and status(api, ns, "edge-sip"), what="Ready=True")
    assert st["totals"] == {"packets": 1500, "drops": 0, "sipMessages": 50, "matchedCalls": 0,
                            "mediaStreams": 0}
    assert set(st["agents"]) == {"agent-a", "agent-b"}               # neither agent clobbered the other
    assert cond(st, "Capturing")["status"] == "True" and cond(st, "Degraded")["status"] == "False"
    ready_since = cond(st, "Ready")["lastTransitionTime"]

    agent_report(api, ns, "edge-sip", "agent-b", packets=500, drops=100, sipMessages=10)
    st = wait_for(lambda: cond(status(api, ns, "edge-sip"), "Degraded").get("status") == "True"
                  and status(api, ns, "edge-sip"), what="Degraded")
    assert cond(st, "Degraded")["reason"] == "KernelDrops"
    assert cond(st, "Ready")["lastTransitionTime"] == ready_since      # unchanged conditions keep their time
    agent_report(api, ns, "edge-sip", "agent-a", packets=100000, spoolBytes=5 << 20)
    st = wait_for(lambda: "KafkaUnavailable" in cond(status(api, ns, "edge-sip"), "Degraded").get("message", "")
                  or "spool" in cond(status(api, ns, "edge-sip"), "Degraded").get("message", "")
                  and status(api, ns, "edge-sip"), what="spool alarm")

    # an agent pod in CrashLoopBackOff (as the kubelet would report it)
    api["core"].create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "otus-edge-sip-x1", "namespace": ns, "labels": {"otus.io/capturetask": "edge-sip"}},
        "spec": {"containers": [{"name": "otus-agent", "image": "i"}]},
        "status": {"containerStatuses": [{"name": "otus-agent", "restartCount": 6, "ready": False, "image": "i",
                                          "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})
    st = wait_for(lambda: cond(status(api, ns, "edge-sip"), "Degraded").get("reason") == "AgentCrashLooping"
                  and status(api, ns, "edge-sip"), what="AgentCrashLooping")
    assert "otus-edge-sip-x1" in cond(st, "Degraded")["message"]
    api["core"].delete_namespaced_pod("otus-edge-sip-x1", ns)

    # a spec change reaches the agents through the ConfigMap; the pod template stays
    obj = get(api, ns, "edge-sip")
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, "edge-sip", {"spec": {"capture": {"workers": 3}}})
    wait_for(lambda: yaml.safe_load(api["core"].read_namespaced_config_map("otus-edge-sip", ns).data["task.yaml"])
             ["workers"] == 3, what="the new task file")
    ds2 = json.loads(api["apps"].read_namespaced_daemon_set("otus-edge-sip", ns, _preload_content=False).data)
    assert ds2["spec"]["template"]["metadata"]["annotations"] == ds["spec"]["template"]["metadata"]["annotations"]
    gen = obj["metadata"]["generation"] + 1
    wait_for(lambda: status(api, ns, "edge-sip").get("observedGeneration") == gen, what="observedGeneration")

    # suspend: agents stop (DaemonSet gone, task file says suspend), the CR stays
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, "edge-sip", {"spec": {"suspend": True}})
    wait_for(lambda: gone(lambda: api["apps"].read_namespaced_daemon_set("otus-edge-sip", ns)), what="DS deleted")
    assert api["core"].read_namespaced_config_map("otus-edge-sip", ns).data["suspend"] == "true"
    st = wait_for(lambda: status(api, ns, "edge-sip").get("phase") == "Suspended" and status(api, ns, "edge-sip"),
                  what="Suspended")
    assert cond(st, "Ready")["reason"] == "Suspended" and not st.get("agents")
    # resume
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, "edge-sip", {"spec": {"suspend": False}})
    wait_for(lambda: api["apps"].read_namespaced_daemon_set("otus-edge-sip", ns), what="DS back")

    # delete: the finalizer cleans up every child, then the CR goes
    assert "otus.io/cleanup" in get(api, ns, "edge-sip")["metadata"]["finalizers"]
    api["custom"].delete_namespaced_custom_object(G, V, ns, P, "edge-sip")
    wait_for(lambda: gone(lambda: get(api, ns, "edge-sip")), what="the CR gone")
    assert gone(lambda: api["core"].read_namespaced_service("otus-edge-sip-metrics", ns))
    for read in (api["apps"].read_namespaced_daemon_set, api["core"].read_namespaced_config_map,
                 api["core"].read_namespaced_service_account, api["rbac"].read_namespaced_role,
                 api["rbac"].read_namespaced_role_binding):
        assert gone(lambda: read("otus-edge-sip", ns)), read.__name__


def test_two_daemonset_tasks_get_their_own_host_ports_and_events(api, ns):
    """Issue 13.3: tasks sharing nodes do not share the agents' host port; 13.6: Events on the task."""
    for n in ("port-a", "port-b"):
        t = example("daemonset")
        t["metadata"]["name"] = n
        create(api, ns, t)
    ports = {}
    for n in ("port-a", "port-b"):
        ds = wait_for(lambda: json.loads(api["apps"].read_namespaced_daemon_set(f"otus-{n}", ns,
                                                                                 _preload_content=False).data),
                      what=f"the DaemonSet of {n}")
        c = ds["spec"]["template"]["spec"]["containers"][0]
        ports[n] = c["ports"][0]["containerPort"]
        wait_for(lambda: status(api, ns, n).get("agentPort") == ports[n], what="the port in the status")
        svc = api["core"].read_namespaced_service(f"otus-{n}-metrics", ns)
        assert svc.spec.ports[0].port == ports[n]
    assert ports["port-a"] != ports["port-b"], ports
    # the scheduler could not place an agent: the status says why
    api["core"].create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "otus-port-b-x", "namespace": ns, "labels": {"otus.io/capturetask": "port-b"}},
        "spec": {"containers": [{"name": "otus-agent", "image": "i"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                   "reason": "Unschedulable", "message": "0/1 nodes are available: 1 node(s) didn't have free "
                   "ports for the requested pod ports."}]}})
    st = wait_for(lambda: cond(status(api, ns, "port-b"), "Ready").get("reason") == "AgentsUnschedulable"
                  and status(api, ns, "port-b"), what="the reason in the status")
    assert "free ports" in cond(st, "Ready")["message"]
    seen = wait_for(lambda: [e for e in api["core"].list_namespaced_event(ns).items
                             if e.involved_object.name == "port-b" and e.reason == "AgentUnschedulable"],
                    what="an AgentUnschedulable Event on the CaptureTask")
    assert seen[0].type == "Warning" and "free ports" in seen[0].message
    assert all(e.involved_object.kind == "CaptureTask" for e in api["core"].list_namespaced_event(ns).items)
    for n in ("port-a", "port-b"):
        api["custom"].delete_namespaced_custom_object(G, V, ns, P, n)
    wait_for(lambda: gone(lambda: get(api, ns, "port-b")), what="deleted")


def test_duration_elapsed_is_succeeded_and_the_cr_stays(api, ns):
    t = example("daemonset")
    t["metadata"]["name"] = "short"
    t["spec"]["limits"] = {"duration": "2s"}
    create(api, ns, t)
    wait_for(lambda: api["apps"].read_namespaced_daemon_set("otus-short", ns), what="DS")
    agent_report(api, ns, "short", "a1", packets=10)
    st = wait_for(lambda: status(api, ns, "short").get("phase") == "Succeeded" and status(api, ns, "short"),
                  timeout=20, what="Succeeded")
    assert st["completionTime"] and cond(st, "Ready")["reason"] == "Completed"
    wait_for(lambda: gone(lambda: api["apps"].read_namespaced_daemon_set("otus-short", ns)), what="agents stopped")
    assert api["core"].read_namespaced_config_map("otus-short", ns).data["suspend"] == "true"
    time.sleep(1.5)
    assert get(api, ns, "short")["status"]["phase"] == "Succeeded"          # and the user's CR is still there


def test_invalid_spec_is_failed_with_a_reason(api, ns):
    # the emulator does not enforce the CRD schema (a real API server would refuse this at admission)
    create(api, ns, {"apiVersion": f"{G}/{V}", "kind": "CaptureTask", "metadata": {"name": "bad"},
                     "spec": {"target": {"nodes": {}}, "capture": {"workers": 0}}})
    st = wait_for(lambda: status(api, ns, "bad").get("phase") == "Failed" and status(api, ns, "bad"),
                  what="Failed")
    c = cond(st, "Ready")
    assert c["reason"] == "InvalidSpec" and "capture.workers" in c["message"]
    assert gone(lambda: api["apps"].read_namespaced_daemon_set("otus-bad", ns))


def _review(pod: dict, ns: str) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": ns, "operation": "CREATE",
                        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                        "object": pod, "oldObject": None, "dryRun": False,
                        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def _pod(name: str, ns: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "sbc", "image": "registry.example/sbc:1.0"}]}}


def test_sidecar_mode_webhook_and_status(api, ns, cluster, operator):
    create(api, ns, example("sidecar"))
    wait_for(lambda: api["core"].read_namespaced_config_map("otus-sbc-sip", ns), what="ConfigMap")
    binding = json.loads(api["rbac"].read_namespaced_role_binding("otus-sbc-sip", ns, _preload_content=False).data)
    assert not binding.get("subjects")          # no pod carries the agent yet: nobody may read the task
    assert gone(lambda: api["apps"].read_namespaced_daemon_set("otus-sbc-sip", ns))

    # the chart's webhook configuration, with the CA the operator put in (its shared certificate)
    hook = wait_for(lambda: (h := json.loads(api["adm"].read_mutating_webhook_configuration(
        "otus-sidecar.otus.io", _preload_content=False).data)["webhooks"][0])["clientConfig"].get("caBundle") and h,
        what="the CA bundle in the webhook configuration")
    cc = hook["clientConfig"]
    assert cc["service"]["name"] == "otus-webhook" and cc["service"]["namespace"] == "otus-system"
    assert hook["failurePolicy"] == "Ignore" and hook["rules"][0]["resources"] == ["pods"]
    assert hook["sideEffects"] == "NoneOnDryRun" and hook["timeoutSeconds"] == 5
    secret = api["core"].read_namespaced_secret("otus-webhook-ca", "otus-system").data
    assert base64.b64decode(secret["ca.crt"]) == base64.b64decode(cc["caBundle"])     # replicas share it

    # the API server's side of the call, over TLS verified against the advertised CA bundle
    ctx = ssl.create_default_context(cadata=base64.b64decode(cc["caBundle"]).decode())
    url = f"https://127.0.0.1:{operator.config.webhook_port}{cc['service']['path']}"

    def call(pod: dict) -> dict:
        req = urllib.request.Request(url, json.dumps(_review(pod, ns)).encode(),
                                     {"Content-Type": "application/json"})
        # the certificate names the Service, as the API server would ask for it
        import http.client

        class Conn(http.client.HTTPSConnection):
            def connect(self):
                super(http.client.HTTPSConnection, self).connect()
                self.sock = ctx.wrap_socket(self.sock, server_hostname="otus-webhook.otus-system.svc")
        handler = urllib.request.HTTPSHandler(context=ctx)
        handler.https_open = lambda r: handler.do_open(Conn, r)
        return json.loads(urllib.request.build_opener(handler).open(req, timeout=10).read())

    # wait until kopf's index has seen the task
    pod = _pod("sbc-0", ns, {"app": "sbc", "tier": "edge"})
    resp = wait_for(lambda: (r := call(pod)["response"]).get("patch") and r, what="a patch")
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(resp["patch"])))
    agent = next(c for c in patched["spec"]["containers"] if c["name"] == "otus-agent")
    assert agent["securityContext"]["capabilities"]["add"] == ["NET_RAW", "NET_ADMIN"]
    assert {v["name"] for v in patched["spec"]["volumes"]} >= {"otus-task", "otus-spool", "otus-tmp"}
    assert patched["metadata"]["annotations"]["otus.io/capturetask"] == "sbc-sip"
    assert patched["metadata"]["labels"] == {"app": "sbc", "tier": "edge", "otus.io/capturetask": "sbc-sip"}
    validate_k8s(patched)

    # the injected pod's service account (here the default one) may now read its task, and only it
    binding = json.loads(api["rbac"].read_namespaced_role_binding("otus-sbc-sip", ns, _preload_content=False).data)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]
    pod_sa = _pod("sbc-sa", ns, {"app": "sbc"})
    pod_sa["spec"]["serviceAccountName"] = "sbc"
    assert call(pod_sa)["response"].get("patch")
    binding = json.loads(api["rbac"].read_namespaced_role_binding("otus-sbc-sip", ns, _preload_content=False).data)
    assert {s["name"] for s in binding["subjects"]} == {"default", "sbc"}
    other = call(_pod("web-0", ns, {"app": "web"}))["response"]
    assert other["allowed"] is True and "patch" not in other
    again = call(patched)["response"]                           # already carries an agent: left alone
    assert "patch" not in again
    opted_out = _pod("sbc-x", ns, {"app": "sbc"})
    opted_out["metadata"]["annotations"] = {"otus.io/inject": "false"}
    assert "patch" not in call(opted_out)["response"]
    elsewhere = call({**_pod("sbc-1", "other-ns", {"app": "sbc"})})["response"]
    assert "patch" not in elsewhere                              # the task only selects pods of its namespace

    # pods in the emulator: one created through the webhook, one from before the task
    api["core"].create_namespaced_pod(ns, {**patched, "metadata": {**patched["metadata"], "namespace": ns}})
    api["core"].create_namespaced_pod(ns, _pod("sbc-old", ns, {"app": "sbc"}))
    api["core"].create_namespaced_pod(ns, _pod("web-0", ns, {"app": "web"}))
    st = wait_for(lambda: (status(api, ns, "sbc-sip").get("pods") or {}).get("matching") == 2
                  and status(api, ns, "sbc-sip"), what="pods in status")
    assert st["mode"] == "Sidecar" and st["pods"] == {"matching": 2, "injected": 1, "notInjected": ["sbc-old"]}
    agent_report(api, ns, "sbc-sip", "sbc-0", packets=42, sipMessages=4)
    st = wait_for(lambda: cond(status(api, ns, "sbc-sip"), "Ready").get("status") == "True"
                  and status(api, ns, "sbc-sip"), what="Ready")
    assert st["phase"] == "Running" and st["readyAgents"] == 1

    # suspended tasks inject nothing, and running sidecars are told to stop
    api["custom"].patch_namespaced_custom_object(G, V, ns, P, "sbc-sip", {"spec": {"suspend": True}})
    wait_for(lambda: api["core"].read_namespaced_config_map("otus-sbc-sip", ns).data["suspend"] == "true",
             what="suspend in the task file")
    wait_for(lambda: "patch" not in call(_pod("sbc-2", ns, {"app": "sbc"}))["response"], what="no injection")

    api["custom"].delete_namespaced_custom_object(G, V, ns, P, "sbc-sip")
    wait_for(lambda: gone(lambda: get(api, ns, "sbc-sip")), what="CR gone")
    # issue 13.4, the operator's side: the agents' access is revoked, their task file is gone
    assert gone(lambda: api["core"].read_namespaced_config_map("otus-sbc-sip", ns))
    assert gone(lambda: api["rbac"].read_namespaced_role_binding("otus-sbc-sip", ns))
    assert gone(lambda: api["rbac"].read_namespaced_role("otus-sbc-sip", ns))


def test_operator_metrics_count_what_happened(api, ns):
    from prometheus_client import generate_latest

    from otus_operator import metrics
    before = metrics.RECONCILES.labels("ok")._value.get()
    create(api, ns, {**example("daemonset"), "metadata": {"name": "m1"}})
    wait_for(lambda: metrics.RECONCILES.labels("ok")._value.get() > before, what="a counted reconcile")
    wait_for(lambda: status(api, ns, "m1").get("phase") == "Pending", what="Pending")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'otus_operator_capturetasks{phase="Pending"}' in text and "otus_operator_reconciles_total" in text
    assert "otus_operator_sidecar_injections_total" in text or metrics.INJECTIONS._metrics == {}
    api["custom"].delete_namespaced_custom_object(G, V, ns, P, "m1")
    wait_for(lambda: gone(lambda: get(api, ns, "m1")), what="deleted")


def test_attach_existing_pods_as_ephemeral_containers(api, ns):
    token_vol = {"name": "kube-api-access-q", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    for name in ("old-0", "old-1"):
        pod = _pod(name, ns, {"app": "sbc"})
        pod["spec"]["volumes"] = [token_vol]
        pod["status"] = {"phase": "Running"}
        api["core"].create_namespaced_pod(ns, pod)
    t = example("sidecar")
    t["spec"]["target"]["pods"]["attachExisting"] = True
    create(api, ns, t)
    st = wait_for(lambda: (status(api, ns, "sbc-sip").get("pods") or {}).get("injected") == 2
                  and status(api, ns, "sbc-sip"), what="both pods carrying an ephemeral agent")
    assert st["pods"]["notInjected"] == []
    pod = json.loads(api["core"].read_namespaced_pod("old-0", ns, _preload_content=False).data)
    eph = pod["spec"]["ephemeralContainers"]
    assert len(eph) == 1 and eph[0]["name"] == "otus-agent" and "--task-configmap" in eph[0]["args"]
    assert eph[0]["volumeMounts"][0]["name"] == "kube-api-access-q"
    time.sleep(1.5)                       # later rounds do not attach twice
    pod = json.loads(api["core"].read_namespaced_pod("old-0", ns, _preload_content=False).data)
    assert len(pod["spec"]["ephemeralContainers"]) == 1
    role = json.loads(api["rbac"].read_namespaced_role("otus-sbc-sip", ns, _preload_content=False).data)
    assert {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["otus-sbc-sip"],
            "verbs": ["get"]} in role["rules"]
    api["custom"].delete_namespaced_custom_object(G, V, ns, P, "sbc-sip")
    wait_for(lambda: gone(lambda: get(api, ns, "sbc-sip")), what="deleted")
