"""The webhook endpoint as a Kubernetes Service, its certificate, and its CA in the configuration.

The Helm chart renders the MutatingWebhookConfiguration itself (so `helm uninstall` removes it,
and its timeout and namespace/object selectors are the chart's), and kopf's managed mode, which
would also create a ValidatingWebhookConfiguration and leave both behind, is off.  The operator
only fills in what the chart cannot know: the CA bundle (``patch_ca_bundle``), unless cert-manager
injects it.

Replicas share one self-signed CA and serving certificate through a Secret the chart creates
empty (``shared_certificate``): the first replica to start fills it in (an update conditional on
the resourceVersion; the loser of a race reads the winner's), the others use it, so whichever
replica the Service routes a review to presents a certificate the caBundle vouches for.
"""
from __future__ import annotations

import urllib.parse
from typing import AsyncIterator

import kopf

from . import certs, health


class ServiceWebhookServer(kopf.WebhookServer):
    def __init__(self, *, service: str, namespace: str, service_port: int = 443, config_name: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.service, self.service_namespace, self.service_port = service, namespace, service_port
        self.config_name = config_name

    async def __call__(self, fn) -> AsyncIterator[dict]:
        async for cfg in super().__call__(fn):
            path = urllib.parse.urlparse(cfg["url"]).path.rstrip("/")
            out: dict = {"service": {"name": self.service, "namespace": self.service_namespace,
                                     "port": self.service_port, "path": path}}
            if cfg.get("caBundle"):
                out["caBundle"] = cfg["caBundle"]
            if self.config_name and cfg.get("caBundle"):
                import asyncio
                await asyncio.get_running_loop().run_in_executor(None, patch_ca_bundle, self.config_name,
                                                                 cfg["caBundle"])
            health.HEALTH.webhook_listening = True      # kopf yields once the server listens
            yield out


def patch_ca_bundle(config_name: str, ca_bundle_b64: str) -> None:
    """Put the CA into every webhook of the chart's MutatingWebhookConfiguration (a JSON patch that
    tests each webhook's name, so a concurrent change of the list fails instead of landing elsewhere)."""
    import json

    from kubernetes import client

    from . import kube
    adm = client.AdmissionregistrationV1Api(kube.api())
    cfg = json.loads(adm.read_mutating_webhook_configuration(config_name, _preload_content=False).data)
    ops: list[dict] = []
    for i, hook in enumerate(cfg.get("webhooks") or []):
        if (hook.get("clientConfig") or {}).get("caBundle") == ca_bundle_b64:
            continue
        ops += [{"op": "test", "path": f"/webhooks/{i}/name", "value": hook["name"]},
                {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_bundle_b64}]
    if ops:
        adm.patch_mutating_webhook_configuration(config_name, ops, _content_type="application/json-patch+json",
                                                 _preload_content=False)


_KEYS = ("tls.crt", "tls.key", "ca.crt")


def shared_certificate(secret: str, namespace: str, hosts: list[str], work_dir: str) -> tuple[str, str, bytes]:
    """The replicas' common self-signed certificate, kept in ``secret`` (created empty by the chart)."""
    import base64
    import json
    import os

    from kubernetes import client

    from . import kube
    core = client.CoreV1Api(kube.api())
    os.makedirs(work_dir, mode=0o700, exist_ok=True)
    certfile, keyfile = os.path.join(work_dir, "cert.pem"), os.path.join(work_dir, "key.pem")
    for _ in range(5):
        obj = json.loads(core.read_namespaced_secret(secret, namespace, _preload_content=False).data)
        data = obj.get("data") or {}
        if all(data.get(k) for k in _KEYS):
            crt, key, ca = (base64.b64decode(data[k]) for k in _KEYS)
            with open(os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(key)
            with open(certfile, "wb") as f:
                f.write(crt)
            return certfile, keyfile, ca
        c, k, ca = certs.self_signed(hosts, os.path.join(work_dir, "new"))
        with open(c, "rb") as f:
            crt = f.read()
        with open(k, "rb") as f:
            key = f.read()
        new = {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode(),
               "ca.crt": base64.b64encode(ca).decode()}
        # conditional on the resourceVersion just read: of racing replicas, one writes, the others re-read
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
               {"op": "add", "path": "/data", "value": new}]
        try:
            core.patch_namespaced_secret(secret, namespace, ops, _content_type="application/json-patch+json",
                                         _preload_content=False)
        except kube.ApiException as e:
            if e.status in (409, 422):     # the test failed: another replica was first, use its certificate
                continue
            raise
    raise RuntimeError(f"secret {namespace}/{secret}: could not store or read the webhook certificate")


def server(service: str, namespace: str, addr: str, port: int, service_port: int, cert_dir: str | None,
           work_dir: str, config_name: str | None = None, ca_secret: str | None = None) -> ServiceWebhookServer:
    """A server with the mounted certificate (cert-manager: tls.crt, tls.key, ca.crt), the replicas' shared
    self-signed one (``ca_secret``), or one of its own."""
    kw = dict(service=service, namespace=namespace, service_port=service_port, config_name=config_name,
              addr=addr, port=port)
    if cert_dir:
        import os
        with open(os.path.join(cert_dir, "ca.crt"), "rb") as f:
            cadata = f.read()
        return ServiceWebhookServer(**kw, certfile=os.path.join(cert_dir, "tls.crt"),
                                    pkeyfile=os.path.join(cert_dir, "tls.key"), cadata=cadata)
    hosts = certs.service_hosts(service, namespace)
    if ca_secret:
        certfile, keyfile, ca = shared_certificate(ca_secret, namespace, hosts, work_dir)
    else:
        certfile, keyfile, ca = certs.self_signed(hosts, work_dir)
    return ServiceWebhookServer(**kw, certfile=certfile, pkeyfile=keyfile, cadata=ca)
