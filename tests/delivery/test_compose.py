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


def test_the_console_service():
    """Issue 17.4: the cluster-wide console reads what both agents send, on the host's loopback only, and
    runs without root or capabilities (it captures nothing)."""
    from otus_agent.cli.main import build_parser
    s = load()["services"]
    c = s["console"]
    args = build_parser().parse_args(c["command"])
    assert args.command == "console" and args.func.__module__ == "otus_agent.web.console"
    agents = [build_parser().parse_args(s[a]["command"]) for a in ("otus-uas", "otus-uac")]
    assert {a.kafka_topic for a in agents} == {args.topic} and {a.kafka_brokers for a in agents} == {args.kafka_brokers}
    assert f"PLAINTEXT://{args.kafka_brokers}" == s["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert args.from_beginning and args.listen == "0.0.0.0:8080"
    host, container = c["ports"][0].rsplit(":", 1)[0], c["ports"][0].rsplit(":", 1)[1]
    assert host.startswith("127.0.0.1:") and container == "8080"
    assert host.split(":")[1] not in {p.split(":")[1] for p in s["kafka-ui"]["ports"]}   # no clash with Kafka UI
    assert c["user"] != "0" and c["cap_add"] == [] and c["cap_drop"] == ["ALL"] and c["read_only"] is True
    assert "no-new-privileges:true" in c["security_opt"] and "network_mode" not in c
    assert c["depends_on"]["kafka"]["condition"] == "service_healthy" and c["networks"] == ["voip"]
    assert "http://localhost:8081" in FILE.read_text().split("name:", 1)[0]   # the header says where it is
