"""`python -m otus_operator.selftest CHECK`: the chart's `helm test` checks, run in-cluster.

crd-served      the CaptureTask API answers a list in the release namespace
operator-ready  the operator's metrics Service has a ready endpoint (only Ready pods are endpoints,
                and Ready means watching: otus_operator.health)
webhook-answers an AdmissionReview sent to the webhook Service over TLS, verified against the CA the
                webhook configuration carries (from the shared Secret), comes back allowed
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import urllib.request
import uuid


def main(argv: list[str]) -> int:
    from kubernetes import client, config
    config.load_incluster_config()
    ns = os.environ["OTUS_NAMESPACE"]
    check = argv[0] if argv else ""
    if check == "crd-served":
        client.CustomObjectsApi().list_namespaced_custom_object("otus.io", "v1alpha1", ns, "capturetasks", limit=1)
    elif check == "operator-ready":
        ep = client.CoreV1Api().read_namespaced_endpoints(os.environ["OTUS_METRICS_SERVICE"], ns)
        if not any(s.addresses for s in (ep.subsets or [])):
            print("no ready operator pod behind the metrics Service")
            return 1
    elif check == "webhook-answers":
        sec = client.CoreV1Api().read_namespaced_secret(os.environ["OTUS_WEBHOOK_SECRET"], ns)
        ca = base64.b64decode((sec.data or {})["ca.crt"]).decode()
        svc = os.environ["OTUS_WEBHOOK_SERVICE"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "otus-selftest", "namespace": ns},
               "spec": {"containers": [{"name": "c", "image": "none"}]}}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "resource": {"group": "", "version": "v1", "resource": "pods"},
                              "namespace": ns, "operation": "CREATE", "userInfo": {"username": "helm-test"},
                              "object": pod, "dryRun": True}}
        ctx = ssl.create_default_context(cadata=ca)
        req = urllib.request.Request(f"https://{svc}.{ns}.svc:443/inject", json.dumps(review).encode(),
                                     {"Content-Type": "application/json"})
        resp = json.loads(urllib.request.urlopen(req, context=ctx, timeout=10).read())
        if not resp.get("response", {}).get("allowed"):
            print(f"the webhook did not allow the pod: {resp}")
            return 1
    else:
        print(__doc__)
        return 2
    print(f"{check}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
