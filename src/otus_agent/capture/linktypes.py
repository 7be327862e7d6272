"""pcap LINKTYPE_* numbers the agent can decode, with names for messages."""

LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL (BSD loopback)",
    1: "ETHERNET",
    9: "PPP",
    12: "RAW (OpenBSD)",
    14: "RAW (BSD/OS)",
    50: "PPP_HDLC",
    51: "PPP_ETHER (PPPoE)",
    101: "RAW",
    108: "LOOP",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}

ETHERNET = 1
RAW = 101


def describe(linktype: int) -> str:
    return f"{linktype} ({LINKTYPE_NAMES.get(linktype, 'unknown')})"


def is_supported(linktype: int) -> bool:
    return linktype in LINKTYPE_NAMES
