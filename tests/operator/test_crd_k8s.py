"""The generated CRD is a valid apiextensions.k8s.io/v1 object by Kubernetes' own schema: what the API
server would take.  (OpenAPI v3.0 bounds: ``exclusiveMinimum`` is a flag beside ``minimum``, not a number;
the number form made the API server refuse the whole CRD.)"""
from __future__ import annotations

import pytest

from otus_operator import crd


def test_the_crd_is_valid_for_the_api_server():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(crd.crd(), "1.30.0", strict=True)


def test_exclusive_bounds_are_flags():
    media = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["media"]
    interim = media["properties"]["interimSeconds"]
    assert (interim["minimum"], interim["exclusiveMinimum"]) == (0, True)
