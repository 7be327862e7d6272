# SDP offsets: the one layout.  sip/sdp_cy.py's scanner (_scan_sdp) walks a body once and fills NSDP int64
# slots (offsets into the message; -1 when absent); its two emitters read them: _sdp_dict (the record's
# dict, the general path) and sip/writer_cy.py's _sdp (JSON bytes, the compiled lane).
# sip/sdpspans.py is the Python view, generated from this file (python -m otus_agent._pxd --write).

cdef enum:
    NSDP = 1040  # slots: SD_RTP + MAX_RTPMAP * RW
    SD_ENC = 0  # text of the body: 1 UTF-8, 2 latin-1 (not UTF-8), 0 ASCII (in every line read)
    SD_NMEDIA = 1  # media lines kept (at most MAX_MEDIA)
    SD_NRTP = 2  # rtpmap entries kept, all media (at most MAX_RTPMAP)
    SD_OU0 = 3  # origin (o=): username, session id, session version, address; -1: no o= line of 6 fields
    SD_OU1 = 4
    SD_OI0 = 5
    SD_OI1 = 6
    SD_OV0 = 7
    SD_OV1 = 8
    SD_OA0 = 9
    SD_OA1 = 10
    SD_C0 = 11  # session connection address (c= before any media); -1: none
    SD_C1 = 12
    SD_DIR = 13  # session direction: the last a=sendrecv (1), sendonly (2), recvonly (3), inactive (4) before any media; 0 none
    SD_MUX = 14  # 1: an a=rtcp-mux before any media
    SD_MEDIA = 16  # the first media's MW slots
    MAX_MEDIA = 32  # media lines past this are ignored
    MW = 16  # slots per media, M_* relative to SD_MEDIA + MW * index
    M_T0 = 0  # media type
    M_T1 = 1
    M_PORT = 2  # port (1-5 ASCII digits before any '/'); -1: null
    M_P0 = 3  # protocol
    M_P1 = 4
    M_PL0 = 5  # payload types: the fields from the 4th to the line's end (M_PL0 == M_PL1: none)
    M_PL1 = 6
    M_CONN = 7  # 0 no c= line; 1 the first c= came before any rtpmap, 2 after (the keys' order)
    M_C0 = 8  # media connection address (the last c=); -1: null
    M_C1 = 9
    M_R = 10  # index of the media's first rtpmap entry
    M_RN = 11  # its rtpmap entries (distinct payload types, the last value of a repeated one)
    M_DIR = 12  # the media's direction (as SD_DIR, its last a= direction line); 0 none
    M_RC0 = 13  # a=rtcp: value (RFC 3605), whitespace stripped, ASCII lines only (the last); -1: none
    M_RC1 = 14
    M_MUX = 15  # 1: a=rtcp-mux (RFC 5761) in the media
    SD_RTP = 528  # the first rtpmap entry's RW slots: SD_MEDIA + MAX_MEDIA * MW
    MAX_RTPMAP = 128  # rtpmap entries of new payload types past this are ignored
    RW = 4  # slots per rtpmap entry, R_* relative to SD_RTP + RW * index
    R_K0 = 0  # payload type (between "rtpmap:" and the first space)
    R_K1 = 1
    R_V0 = 2  # encoding (the rest, whitespace stripped)
    R_V1 = 3
