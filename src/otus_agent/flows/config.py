"""Settings of the flow table (parser ``flow``): limits and timeouts, validated at the boundary."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FlowConfig(BaseModel):
    """Bounds of the flow table; times are in seconds of packet time (capture timestamps).

    When the table holds ``max_flows`` flows, the oldest-created flow is ended with
    ``end_reason: "evicted"`` (and counted in ``evictions``) to make room for the new one.
    """
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_flows: int = Field(default=65536, ge=1, description="flows held at once; the oldest is evicted when full")
    tcp_syn_timeout_s: float = Field(default=30.0, gt=0, description="idle limit before the handshake completes")
    tcp_established_timeout_s: float = Field(default=300.0, gt=0, description="idle limit of an established TCP flow")
    tcp_closed_timeout_s: float = Field(default=10.0, gt=0, description="linger after FIN both ways or RST")
    udp_timeout_s: float = Field(default=60.0, gt=0, description="idle limit of a UDP (or SCTP, other) flow")
    icmp_timeout_s: float = Field(default=30.0, gt=0, description="idle limit of an ICMP flow")
    report_interval_s: float = Field(default=60.0, ge=0, description="interval records for active flows; 0: end only")
    reassemble_fragments: bool = Field(default=True, description="count an IP-fragmented datagram once, when "
                                       "its last fragment completes it (as tshark does); else count fragments only")
    sweep_interval_s: float = Field(default=1.0, gt=0, description="how often (packet time) timeouts are checked")
    # not a task setting: set by the daemon, which reads the live table through a socket there (flows/view.py)
    view_dir: str | None = Field(default=None, exclude=True, description="directory of the table's view socket")
