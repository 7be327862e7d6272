"""The operator's RBAC rules (otus_operator.rbac) as the API server's authorizer reads them, and the
check conftest.py applies to every API call the operator makes in the emulator."""
from __future__ import annotations

from emulator import Call

from otus_operator import rbac


def test_rule_semantics_follow_the_api_server():
    r = {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "patch"]}
    assert rbac.rule_allows(r, "get", "apps", "daemonsets", name="x")
    assert not rbac.rule_allows(r, "get", "", "daemonsets")                    # the group matters
    assert not rbac.rule_allows(r, "patch", "apps", "daemonsets", "status")    # subresources are their own
    named = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get", "create"]}
    assert rbac.rule_allows(named, "get", "", "configmaps", name="a")
    assert not rbac.rule_allows(named, "get", "", "configmaps", name="b")
    assert not rbac.rule_allows(named, "list", "", "configmaps")
    assert not rbac.rule_allows(named, "create", "", "configmaps", name="a")   # create is never name-restricted
    star = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert rbac.rule_allows(star, "delete", "x.io", "things", "status", "n")


def test_both_webhook_configurations_kopf_manages_are_granted():
    """Issue 13.1: kopf's managed admission writes a validating configuration too."""
    for res in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        for verb in ("get", "list", "watch", "create", "patch"):
            assert rbac.allows(rbac.rules(), verb, "admissionregistration.k8s.io", res, name="otus-sidecar.otus.io"), \
                (verb, res)


def test_the_call_check_flags_what_the_rules_miss():
    from emulator import uncovered_calls
    calls = [Call("op", "create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", None, None,
                  None, "/apis/..."),
             Call("op", "get", "", "", None, None, None, "/api")]          # discovery: not a resource request
    without = [r for r in rbac.rules() if "validatingwebhookconfigurations" not in r["resources"]]
    assert uncovered_calls(calls, without) == [
        "create admissionregistration.k8s.io/validatingwebhookconfigurations ns=None name=None (/apis/...)"]
    assert uncovered_calls(calls) == []
