"""The webhook endpoint as a Kubernetes Service, and its certificate.

kopf's WebhookServer advertises a URL; inside a cluster the API server should
reach the operator through its Service instead (a URL host needs DNS the API
server may not have).  This server listens like kopf's and advertises
``clientConfig.service`` with the CA bundle.
"""
from __future__ import annotations

import urllib.parse
from typing import AsyncIterator

import kopf

from . import certs, health


class ServiceWebhookServer(kopf.WebhookServer):
    def __init__(self, *, service: str, namespace: str, service_port: int = 443, **kwargs):
        super().__init__(**kwargs)
        self.service, self.service_namespace, self.service_port = service, namespace, service_port

    async def __call__(self, fn) -> AsyncIterator[dict]:
        async for cfg in super().__call__(fn):
            path = urllib.parse.urlparse(cfg["url"]).path.rstrip("/")
            out: dict = {"service": {"name": self.service, "namespace": self.service_namespace,
                                     "port": self.service_port, "path": path}}
            if cfg.get("caBundle"):
                out["caBundle"] = cfg["caBundle"]
            health.HEALTH.webhook_listening = True      # kopf yields once the server listens
            yield out


def server(service: str, namespace: str, addr: str, port: int, service_port: int, cert_dir: str | None,
           work_dir: str) -> ServiceWebhookServer:
    """A server with the mounted certificate (cert-manager: tls.crt, tls.key, ca.crt) or a self-signed one."""
    if cert_dir:
        import os
        with open(os.path.join(cert_dir, "ca.crt"), "rb") as f:
            cadata = f.read()
        return ServiceWebhookServer(service=service, namespace=namespace, service_port=service_port, addr=addr,
                                    port=port, certfile=os.path.join(cert_dir, "tls.crt"),
                                    pkeyfile=os.path.join(cert_dir, "tls.key"), cadata=cadata)
    certfile, keyfile, ca = certs.self_signed(certs.service_hosts(service, namespace), work_dir)
    return ServiceWebhookServer(service=service, namespace=namespace, service_port=service_port, addr=addr, port=port,
                                certfile=certfile, pkeyfile=keyfile, cadata=ca)
