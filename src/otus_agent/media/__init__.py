"""Media quality: RTP/RTCP parsing, Wireshark-compatible stream statistics, SDP-driven discovery.

Entry point: ``otus_agent.media.stage.MediaStage``; record fields: ``media.fields``.
"""
