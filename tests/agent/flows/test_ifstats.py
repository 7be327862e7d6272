"""Interface counters from sysfs: a fake tree for exact values and rates, the real loopback for a live read."""
from __future__ import annotations

import pathlib

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from otus_agent.observability.ifstats import InterfaceCollector, InterfaceError, InterfaceStats, read_counters


def fake_if(root: pathlib.Path, name: str, **values: int) -> None:
    d = root / name / "statistics"
    d.mkdir(parents=True, exist_ok=True)
    for k, v in values.items():
        (d / k).write_text(f"{v}\n")


def test_counters_and_rates_from_sysfs(tmp_path: pathlib.Path) -> None:
    fake_if(tmp_path, "eth0", rx_packets=100, tx_packets=50, rx_bytes=10_000, tx_bytes=5000, rx_errors=1,
            tx_errors=0, rx_dropped=2, tx_dropped=0)
    st = InterfaceStats(["eth0"], root=str(tmp_path))
    first = st.poll(now=10.0)
    assert first["eth0"]["counters"]["rx_dropped"] == 2 and first["eth0"]["rates"] == {}
    fake_if(tmp_path, "eth0", rx_packets=300, rx_bytes=30_000)
    second = st.poll(now=12.0)
    assert second["eth0"]["rates"]["rx_packets"] == 100.0 and second["eth0"]["rates"]["rx_bytes"] == 10_000.0
    fake_if(tmp_path, "eth0", rx_packets=5)  # counter reset: no negative rate
    assert "rx_packets" not in st.poll(now=13.0)["eth0"]["rates"]


def test_prometheus_exposition(tmp_path: pathlib.Path) -> None:
    fake_if(tmp_path, "eth0", rx_packets=7, tx_dropped=3)
    fake_if(tmp_path, "eth1", rx_packets=9)
    reg = CollectorRegistry()
    reg.register(InterfaceCollector(InterfaceStats(None, root=str(tmp_path))))
    text = generate_latest(reg).decode()
    assert 'otus_interface_receive_packets_total{interface="eth0"} 7.0' in text
    assert 'otus_interface_receive_packets_total{interface="eth1"} 9.0' in text
    assert 'otus_interface_transmit_drops_total{interface="eth0"} 3.0' in text


def test_bad_interface_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InterfaceError, match="no such interface"):
        read_counters("nope0", root=str(tmp_path))
    with pytest.raises(InterfaceError, match="not an interface name"):
        read_counters("../etc")
    assert InterfaceStats(["gone0"], root=str(tmp_path)).poll() == {}


def test_real_loopback_counters() -> None:
    if not pathlib.Path("/sys/class/net/lo/statistics/rx_packets").exists():
        pytest.skip("no sysfs here")
    c = read_counters("lo")
    assert set(c) >= {"rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} and c["rx_packets"] >= 0
