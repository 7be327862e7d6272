"""The SIP path: grammar, fast scanner, SDP, per-transport framing, dialogs, records, JSON writer."""
