# The decoded-batch layout and the decode counters: the one definition.
# cimported by the compiled modules (decode.l2l4_cy, sip.writer_cy); decode/layout.py is the Python view,
# read from this file, for the pure build and for Python callers.

# decoded-batch record: one row of NF int64 per packet
cdef enum:
    NF = 17
    F_STATUS = 0  # ST_* below
    F_REASON = 1  # counter index of the drop reason
    F_IPVER = 2  # 4 or 6 (innermost IP header)
    F_L3OFF = 3  # innermost IP header offset in buf
    F_L3END = 4  # end of that IP datagram (padding cut)
    F_PROTO = 5  # L4 protocol number
    F_L4OFF = 6
    F_PAYOFF = 7  # L4 payload offset in buf
    F_PAYLEN = 8
    F_SPORT = 9
    F_DPORT = 10
    F_TCPFLAGS = 11
    F_TCPSEQ = 12
    F_TCPACK = 13
    F_VLAN = 14  # outermost VLAN id, -1 if untagged
    F_FRAGHDR = 15  # IPv6 fragment header offset
    F_TUNNEL = 16  # TUN_* bits crossed

# F_STATUS values
cdef enum:
    ST_L4 = 0  # UDP/TCP/SCTP decoded
    ST_FRAGMENT = 1  # IP fragment: needs reassembly
    ST_OTHER_IP = 2  # IP with another L4 (ICMP, ESP...)
    ST_NON_IP = 3  # ARP, LLDP, ...: not ours
    ST_DROPPED = 4  # malformed: F_REASON says why

# F_TUNNEL bits
cdef enum:
    TUN_GRE = 1
    TUN_ERSPAN = 2
    TUN_VXLAN = 4
    TUN_IPIP = 8

# decode flags
cdef enum:
    FLAG_VERIFY_IPV4_CSUM = 1
    FLAG_DECODE_VXLAN = 2

# counters: layers seen, then drop reasons (index >= FIRST_DROP); names are the lower-case C_ names
cdef enum:
    C_PACKETS = 0
    C_ETHERNET = 1
    C_SLL = 2
    C_SLL2 = 3
    C_RAW_IP = 4
    C_PPP = 5
    C_NULL_LOOP = 6
    C_VLAN = 7
    C_MPLS = 8
    C_PPPOE = 9
    C_IPV4 = 10
    C_IPV6 = 11
    C_IPV4_FRAGMENT = 12
    C_IPV6_FRAGMENT = 13
    C_UDP = 14
    C_TCP = 15
    C_SCTP = 16
    C_SCTP_DATA_CHUNKS = 17
    C_ICMP = 18
    C_OTHER_L4 = 19
    C_NON_IP = 20
    C_GRE = 21
    C_ERSPAN = 22
    C_VXLAN = 23
    C_IPIP = 24
    C_DROP_UNSUPPORTED_LINKTYPE = 25
    C_DROP_TRUNCATED_LINK = 26
    C_DROP_VLAN_TRUNCATED = 27
    C_DROP_VLAN_TOO_DEEP = 28
    C_DROP_MPLS_BAD = 29
    C_DROP_PPPOE_BAD = 30
    C_DROP_PPP_BAD = 31
    C_DROP_IPV4_TRUNCATED = 32
    C_DROP_IPV4_BAD_VERSION = 33
    C_DROP_IPV4_BAD_IHL = 34
    C_DROP_IPV4_BAD_TOTAL_LENGTH = 35
    C_DROP_IPV4_BAD_CHECKSUM = 36
    C_DROP_IPV6_TRUNCATED = 37
    C_DROP_IPV6_BAD_VERSION = 38
    C_DROP_IPV6_JUMBOGRAM = 39
    C_DROP_IPV6_BAD_EXTENSION = 40
    C_DROP_UDP_TRUNCATED = 41
    C_DROP_UDP_BAD_LENGTH = 42
    C_DROP_TCP_TRUNCATED = 43
    C_DROP_TCP_BAD_OFFSET = 44
    C_DROP_SCTP_TRUNCATED = 45
    C_DROP_SCTP_BAD_CHUNK = 46
    C_DROP_GRE_BAD = 47
    C_DROP_ERSPAN_BAD = 48
    C_DROP_TUNNEL_TOO_DEEP = 49
    C_DROP_BAD_RECORD = 50
    NCOUNTERS = 51
    FIRST_DROP = 25
