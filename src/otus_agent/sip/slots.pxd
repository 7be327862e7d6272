# The SIP scanner's output slots: the one definition.
# cimported by sip.scan_cy and sip.writer_cy; sip/slots.py is the Python view, read from this file.

# scanner output: NOUT int64 slots per message (offsets into the message; -1 when absent)
cdef enum:
    NOUT = 48
    O_HEND = 0  # offset of the CRLFCRLF ending the headers
    O_BODY = 1  # body start
    O_REQ = 2  # 1 request, 0 response
    O_M0 = 3  # method / request-URI / status / reason
    O_M1 = 4
    O_U0 = 5
    O_U1 = 6
    O_STATUS = 7
    O_R0 = 8
    O_R1 = 9
    O_CID0 = 10
    O_CID1 = 11
    O_CSEQ = 12
    O_CSM0 = 13
    O_CSM1 = 14
    O_FU0 = 15  # From: user, host, tag
    O_FU1 = 16
    O_FH0 = 17
    O_FH1 = 18
    O_FT0 = 19
    O_FT1 = 20
    O_TU0 = 21  # To: user, host, tag
    O_TU1 = 22
    O_TH0 = 23
    O_TH1 = 24
    O_TT0 = 25
    O_TT1 = 26
    O_VB0 = 27  # topmost Via branch
    O_VB1 = 28
    O_CL = 29  # Content-Length value, -1 if absent
    O_CT0 = 30
    O_CT1 = 31
    O_UA0 = 32  # User-Agent, else Server
    O_UA1 = 33
    O_SV0 = 34
    O_SV1 = 35
    O_XC0 = 36  # X-CID
    O_XC1 = 37
    O_PC0 = 38  # P-Charging-Vector icid-value
    O_PC1 = 39
    O_SEEN = 40  # bit set of headers seen (H_*)
    O_SCR0 = 41  # scratch: a Contact's expires value
    O_SCR1 = 42

# O_SEEN bits: headers seen
cdef enum:
    H_VIA = 1
    H_FROM = 2
    H_TO = 4
    H_CALLID = 8
    H_CSEQ = 16
    H_CL = 32
    H_CT = 64
    H_MAXFWD = 128
    H_REQUIRED = 31
