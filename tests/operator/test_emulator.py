"""The emulator itself: served requests leave kmock's history (see emulator.StampingEmulator._forget).

kmock looks every new request up in its whole request history, once per reaction, so an emulator that
kept them all answered slower with each call; the calls the tests check are in ``emulator.calls``.
"""
from __future__ import annotations

from emulator import Cluster
from kubernetes import client


def test_served_requests_leave_kmocks_history_and_stay_recorded_for_the_rbac_check():
    c = Cluster().start()
    try:
        core = client.CoreV1Api(c.client())
        core.create_namespaced_config_map("x", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
        for _ in range(50):
            assert core.read_namespaced_config_map("cm", "x").metadata.name == "cm"
        assert len(c.emulator._requests) == 0                     # nothing in flight, nothing kept
        assert [x.verb for x in c.calls()].count("get") == 50     # ... and every call still recorded
    finally:
        c.stop()
