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

NULL = 0
ETHERNET = 1
RAW = 101
LOOP = 108
LINUX_SLL = 113
LINUX_SLL2 = 276

# pcap_open_dead() takes a DLT_* (this platform's number), not the LINKTYPE_* of a file
# header; they differ only for raw IP, whose DLT is 12 on Linux (14 on BSD/OS).
_DLT = {101: 12, 12: 12, 14: 12}

# Link types whose frames can carry an 802.1Q/802.1ad tag in the packet bytes, so that
# libpcap compiles its ``vlan`` keyword for them.  Cooked (LINUX_SLL/SLL2), raw IP and
# loopback headers cannot: libpcap rejects ``vlan`` there ("no VLAN support for ...").
VLAN_CAPABLE = frozenset({ETHERNET})


def describe(linktype: int) -> str:
    return f"{linktype} ({LINKTYPE_NAMES.get(linktype, 'unknown')})"


def dlt(linktype: int) -> int:
    """The DLT_* number libpcap's compiler wants for a LINKTYPE_*."""
    return _DLT.get(linktype, linktype)


def is_supported(linktype: int) -> bool:
    return linktype in LINKTYPE_NAMES
