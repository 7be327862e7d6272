"""TaskSpec / AgentConfig: the user's files as they are, and errors that name the field."""
from __future__ import annotations

import json

import pytest

from otus_agent.daemon.protocol import ProtocolError, parse_request
from otus_spec import AgentConfig, SpecError, TaskSpec, load_config, load_task, task_from_dict

ROOT_CONFIG = """otus:
  control:
    socket: /var/run/otus.sock
  metrics:
    enabled: true
    listen: ":9091"
  log:
    level: info
    format: json
    outputs:
      loki:
        enabled: false
        endpoint: "http://loki:3100/loki/api/v1/push"
  kafka:
    brokers:
      - "kafka:9092"
  command_channel:
    enabled: true
    type: kafka
    kafka:
      topic: otus-commands
"""

LEGACY_TASK = """id: sip-capture
interface: eth0
parsers:
  - sip
bpf_filter: "udp port 5060"
"""


def test_users_existing_files_load_as_they_are(tmp_path):
    (tmp_path / "otus.yaml").write_text(ROOT_CONFIG)
    c = load_config(str(tmp_path / "otus.yaml"))
    assert c.otus.control.socket == "/var/run/otus.sock" and c.otus.metrics.address() == ("0.0.0.0", 9091)
    assert c.otus.kafka.brokers == ["kafka:9092"] and c.otus.command_channel.kafka.topic == "otus-commands"
    assert c.otus.state_dir == "/var/lib/otus"
    (tmp_path / "task.yaml").write_text(LEGACY_TASK)
    t = load_task(str(tmp_path / "task.yaml"))
    assert (t.id, t.interfaces, t.parsers, t.bpf_filter) == ("sip-capture", ["eth0"], ["sip"], "udp port 5060")
    assert t.sip.ports == [5060, 5061, 5080] and t.reporters[0].type == "console"
    (tmp_path / "task.json").write_text(json.dumps({"id": "j1", "interfaces": ["eth0", "eth1"]}))
    assert load_task(str(tmp_path / "task.json")).interfaces == ["eth0", "eth1"]
    assert AgentConfig().otus.control.mode == 0o660


@pytest.mark.parametrize("data,needle", [
    ({"interface": "eth0"}, "task: id: Field required"),
    ({"id": "Bad_Id", "interface": "eth0"}, "task: id: must be lower-case"),
    ({"id": "a"}, "no interface"),
    ({"id": "a", "interface": "eth0", "interfaces": ["eth1"]}, "either 'interface' or 'interfaces'"),
    ({"id": "a", "interfaces": ["eth0", "eth0"]}, "listed twice"),
    ({"id": "a", "interfaces": ["a/b"]}, "bad interface name"),
    ({"id": "a", "interface": "eth0", "parsers": ["sip", "rtcp"]},
     "task: parsers.1: Input should be 'sip', 'rtp', 'flow', 'dns' or 'detect'"),
    ({"id": "a", "interface": "eth0", "parsers": ["rtp"]}, "rtp finds its streams in SIP's SDP: add sip"),
    ({"id": "a", "interface": "eth0", "parsers": ["detect"]}, "detect reads sip records and flow events"),
    ({"id": "a", "interface": "eth0", "parsers": []}, "task: parsers: List should have at least 1 item"),
    ({"id": "a", "interface": "eth0", "media": {"interim_s": 0}}, "task: media.interim_s: Input should be greater"),
    ({"id": "a", "interface": "eth0", "media": {"snaplen": 200}}, "task: media.snaplen: unknown field"),
    ({"id": "a", "interface": "eth0", "flow": {"max_flows": 0}}, "task: flow.max_flows"),
    ({"id": "a", "interface": "eth0", "dns": {"ports": [0]}}, "task: dns.ports: not a port: 0"),
    ({"id": "a", "interface": "eth0", "dns": {"ignore": {"addresses": "x"}}}, "task: dns.ignore.addresses"),
    ({"id": "a", "interface": "eth0", "workers": 0}, "task: workers: Input should be greater than or equal to 1"),
    ({"id": "a", "interface": "eth0", "sip": {"ports": [70000]}}, "task: sip.ports: port 70000 out of range"),
    ({"id": "a", "interface": "eth0", "ring": {"block_size": 5000}}, "task: ring.block_size: 5000 is not a power"),
    ({"id": "a", "interface": "eth0", "reporters": [{"type": "file"}]}, "a file reporter needs 'path'"),
    ({"id": "a", "interface": "eth0", "limits": {"duration_s": -1}}, "task: limits.duration_s"),
    ({"id": "a", "interface": "eth0", "bpf_fliter": "udp"}, "task: bpf_fliter: unknown field"),
    ([1, 2], "expected a mapping"),
])
def test_bad_tasks_name_the_field(data, needle):
    with pytest.raises(SpecError) as e:
        task_from_dict(data)
    assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize("text,needle", [
    ("otus:\n  metrics:\n    listen: nope\n", "otus.metrics.listen: expected [HOST]:PORT"),
    ("otus:\n  log:\n    level: loud\n", "otus.log.level"),
    ("otus:\n  control:\n    mode: 0o999\n", "not an octal file mode"),
    ("otus: [\n", "not valid YAML"),
    ("- 1\n", "expected a mapping"),
    ("otus:\n  colour: blue\n", "otus.colour: unknown field"),
])
def test_bad_configs(tmp_path, text, needle):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SpecError) as e:
        load_config(str(tmp_path / "c.yaml"))
    assert needle in str(e.value), str(e.value)


def test_missing_files():
    with pytest.raises(SpecError, match="no such file"):
        load_task("/nonexistent/task.yaml")
    with pytest.raises(SpecError, match="no such file"):
        load_config("/nonexistent/otus.yaml")


@pytest.mark.parametrize("line,needle", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"cmd": "format.disk"}', "cmd"),
    (b'{"cmd": "task.create"}', "needs 'spec'"),
    (b'{"cmd": "task.delete"}', "needs 'id'"),
    (b'{"cmd": "task.create", "spec": {"id": "x"}}', "no interface"),
    (b'{"cmd": "task.list", "extra": 1}', "unknown field"),
    (b"x" * (2 << 20), "too large"),
])
def test_control_requests_validated(line, needle):
    with pytest.raises(ProtocolError) as e:
        parse_request(line)
    assert needle in str(e.value)


def test_control_request_ok():
    req, spec = parse_request(b'{"cmd": "task.create", "spec": {"id": "t1", "interface": "lo"}}')
    assert req.cmd == "task.create" and isinstance(spec, TaskSpec) and spec.interfaces == ["lo"]


def test_validate_command(tmp_path):
    import subprocess

    from ..conftest import otus_bin
    good = tmp_path / "t.yaml"
    good.write_text(LEGACY_TASK)
    r = subprocess.run([otus_bin(), "validate", "-f", str(good)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "valid task 'sip-capture'" in r.stdout
    bad = tmp_path / "b.yaml"
    bad.write_text(LEGACY_TASK.replace("udp port 5060", "udp prot 5060"))
    r = subprocess.run([otus_bin(), "validate", "-f", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "b.yaml: bpf_filter: invalid filter" in r.stderr and "syntax error" in r.stderr
    bad.write_text("id: x\nworkers: [1]\n")
    r = subprocess.run([otus_bin(), "validate", "-f", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "b.yaml: workers: Input should be a valid integer" in r.stderr


def test_worker_output_goes_straight_to_a_single_file_reporter(tmp_path):
    from otus_agent.daemon.task import configs
    from otus_spec import TaskSpec
    f = str(tmp_path / "r.jsonl")
    one = TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "workers": 2,
                                   "reporters": [{"type": "file", "path": f}]})
    assert configs(one)[0].output_path == f
    both = TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "workers": 2,
                                    "reporters": [{"type": "file", "path": f}, {"type": "console"}]})
    assert configs(both)[0].output_path is None            # two outputs: relayed and written by the task
    single = TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "reporters": [{"type": "file", "path": f}]})
    assert configs(single)[0].output_path is None          # one process: no relay to avoid
    hep = TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "reporters": [
        {"type": "hep", "address": "127.0.0.1:9060"}]})
    live = configs(hep)[0]
    assert live.hep is not None and live.hep.address == "127.0.0.1:9060" and live.lines is False
    import pytest
    with pytest.raises(ValueError):
        TaskSpec.model_validate({"id": "t", "interfaces": ["lo"], "reporters": [{"type": "hep"}]})


def test_record_sink_buffer_is_bounded():
    """JSON lines are written once LINES_MAX bytes are buffered, not kept until the end."""
    from otus_agent.reporters.sink import LINES_MAX, RecordSink
    writes = []
    sink = RecordSink(writes.append)
    rec = {"call_id": "x" * 1000}
    for _ in range(3 * LINES_MAX // 1000):
        sink.emit(rec)
        assert len(sink.lines) < LINES_MAX + 1100
    sink.emit_block(b'{"a":1}\n', None)
    assert writes and len(sink.lines) < LINES_MAX
    sink.flush()
    data = b"".join(writes)
    assert data.count(b"\n") == 3 * LINES_MAX // 1000 + 1 and data.endswith(b'{"a":1}\n')


def test_parser_sections_reach_the_agent_configs():
    """The task's media/flow/dns sections become the stages' own configs (same fields, same defaults)."""
    from otus_agent.daemon.task import configs, parser_settings
    from otus_agent.dns.config import DnsConfig
    from otus_agent.flows.config import FlowConfig
    from otus_agent.media.stage import MediaConfig
    from otus_spec import DnsOptions, FlowOptions, MediaOptions
    # the defaults are one fact: the spec's options spell out the stages' defaults
    assert MediaOptions().model_dump(exclude={"enabled"}) == MediaConfig().model_dump()
    assert FlowOptions().model_dump() == FlowConfig().model_dump()
    d = DnsConfig().model_dump()
    assert DnsOptions().model_dump() == {**d, "ports": sorted(d["ports"]),
                                         "ignore": {**d["ignore"], "ports": sorted(d["ignore"]["ports"]),
                                                    "addresses": list(d["ignore"]["addresses"]),
                                                    "domains": list(d["ignore"]["domains"])}}
    spec = task_from_dict({"id": "a", "interface": "eth0", "parsers": ["sip", "dns", "flow"],
                           "media": {"enabled": True, "interim_s": 5, "heuristic": True},
                           "flow": {"max_flows": 10, "udp_timeout_s": 3}, "dns": {"ports": [53], "top_domains": 7}})
    assert spec.parsers == ["sip", "dns", "flow", "rtp"]          # media.enabled adds rtp
    s = parser_settings(spec)
    assert s["rtp"] == MediaConfig(interim_s=5, heuristic=True)
    assert s["flow"].max_flows == 10 and s["flow"].udp_timeout_s == 3
    assert s["dns"].ports == frozenset({53}) and s["dns"].top_domains == 7
    live, _, _ = configs(spec)
    assert live.parsers == ("sip", "dns", "flow", "rtp") and live.settings == s
    assert parser_settings(task_from_dict({"id": "a", "interface": "eth0"})) == {}


def test_capturetask_sections_render_to_the_task_parsers():
    """A CaptureTask with media, flow, dns and detect on: the operator's task file runs those parsers."""
    from otus_agent.daemon.task import parser_settings
    from otus_operator.crd import CaptureTaskSpec
    from otus_operator.render import task_spec
    ct = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "media": {"enabled": True, "interimSeconds": 7},
                                         "flow": {"enabled": True, "maxFlows": 99}, "dns": {"enabled": True,
                                                                                           "ports": [53]},
                                         "detect": True})
    spec = task_from_dict(task_spec("ct", ct))
    assert spec.parsers == ["sip", "rtp", "flow", "dns", "detect"]
    s = parser_settings(spec)
    assert s["rtp"].interim_s == 7 and s["flow"].max_flows == 99 and s["dns"].ports == frozenset({53})
    plain = task_from_dict(task_spec("ct", CaptureTaskSpec.model_validate({"target": {"nodes": {}}})))
    assert plain.parsers == ["sip"]
