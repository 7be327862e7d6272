"""Flow table / connection tracking (parser ``flow``): ``FlowStage`` over the decoded batch."""
from __future__ import annotations

from otus_agent.flows.config import FlowConfig
from otus_agent.flows.stage import FlowStage

__all__ = ["FlowConfig", "FlowStage"]
