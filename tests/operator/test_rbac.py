"""The operator's RBAC rules (otus_operator.rbac) as the API server's authorizer reads them, and the
check conftest.py applies to every API call the operator makes in the emulator."""
from __future__ import annotations

from emulator import Call, uncovered_calls

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


def test_only_its_own_webhook_configuration_and_no_validating_one():
    """Issue 13.1/13.5: the chart owns the configuration, the operator only patches its CA in; kopf's
    managed mode (which also wrote a ValidatingWebhookConfiguration) is off."""
    rules = rbac.rules(**rbac.release_names("otus"))
    adm = "admissionregistration.k8s.io"
    assert rbac.allows(rules, "patch", adm, "mutatingwebhookconfigurations", name="otus-sidecar.otus.io")
    assert not rbac.allows(rules, "patch", adm, "mutatingwebhookconfigurations", name="someone-elses")
    assert not rbac.allows(rules, "create", adm, "mutatingwebhookconfigurations", name="otus-sidecar.otus.io")
    assert not any(rbac.allows(rules, v, adm, "validatingwebhookconfigurations", name="otus-sidecar.otus.io")
                   for v in ("get", "create", "patch"))


def test_the_call_check_flags_what_the_rules_miss():
    calls = [Call("op", "create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", None, None,
                  None, "/apis/..."),
             Call("op", "get", "", "", None, None, None, "/api"),           # discovery: not a resource request
             Call("op", "get", "", "secrets", None, "otus-system", "otus-webhook-ca", "/api/v1/..."),
             Call("op", "get", "", "secrets", None, "voip", "otus-webhook-ca", "/api/v1/...")]
    assert uncovered_calls(calls) == [
        "create admissionregistration.k8s.io/mutatingwebhookconfigurations ns=None name=None (/apis/...)",
        "get core/secrets ns=voip name=otus-webhook-ca (/api/v1/...)"]
