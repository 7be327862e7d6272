"""voip-simulator/docker-compose.yml, checked statically (no Docker engine here): the Compose specification
(compose-spec's parser and models), and the rules the simulator depends on."""
from __future__ import annotations

import copy
import json
import os
import pathlib

import pytest
import yaml

compose_spec = pytest.importorskip("compose_spec")

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILE = ROOT / "voip-simulator" / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(FILE.read_text())      # resolves the YAML merge keys as Compose does


def validate(d: dict) -> None:
    from compose_spec.models import ComposeSpecification
    ComposeSpecification.model_validate(d)
    compose_spec.PyCompose.from_json(json.dumps(d))


def test_file_is_valid_compose():
    validate(load())


@pytest.mark.parametrize("path,value", [
    (("services", "otus-uas", "netmode"), "service:uas"),
    (("services", "otus-uas", "cap_add"), 3),
    (("services", "kafka", "healthcheck", "retries"), "many"),
    (("services", "uac", "depends_on", "uas", "condition"), "whenever"),
])
def test_broken_files_are_rejected(path, value):
    d = copy.deepcopy(load())
    t = d
    for k in path[:-1]:
        t = t[k]
    t[path[-1]] = value
    with pytest.raises(Exception):
        validate(d)


def _expand(args: list[str]) -> list[str]:
    """${VAR:-default} as Compose interpolates it with nothing set."""
    out = []
    for a in args:
        if a.startswith("${") and ":-" in a:
            out.append(a[2:-1].split(":-", 1)[1])
        else:
            out.append(os.path.expandvars(a))
    return out


def test_the_simulator_wiring():
    from otus_agent.cli.main import build_parser
    from otus_agent.sim.sipua import build_parser as ua_parser
    s = load()["services"]
    env = s["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "CONTROLLER" in env["KAFKA_LISTENERS"]   # KRaft
    assert "kafka-ui" in s and s["kafka-ui"]["ports"][0].startswith("127.0.0.1:")
    for name in s:
        img = s[name]["image"]
        assert ":" in img and not img.endswith(":latest"), f"{name}: image tag pinned"
    for sip, agent in (("uas", "otus-uas"), ("uac", "otus-uac")):
        a = s[agent]
        assert a["network_mode"] == f"service:{sip}", "the agent shares its SIP peer's network namespace"
        assert a["cap_drop"] == ["ALL"] and sorted(a["cap_add"]) == ["NET_ADMIN", "NET_RAW"]
        assert a["read_only"] is True and "no-new-privileges:true" in a["security_opt"]
        args = build_parser().parse_args(a["command"])
        assert args.kafka_brokers == "kafka:9092" and args.interface == ["eth0"]
        ua = ua_parser().parse_args(_expand(s[sip]["command"]))
        assert ua.bind == s[sip]["networks"]["voip"]["ipv4_address"]
    uac = ua_parser().parse_args(_expand(s["uac"]["command"]))
    assert uac.target == s["uas"]["networks"]["voip"]["ipv4_address"] and uac.calls == 1000
