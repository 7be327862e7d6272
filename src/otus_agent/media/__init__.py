"""Media quality (issue 16): RTP/RTCP found from SDP, measured as tshark measures, joined to calls.

Modules, one job each:

- ``rtp_cy``     the hot path: RTP header parse and ``RtpStream`` statistics (Wireshark 4.0's
                 definitions), Cython pure mode (compiled by setup.py, plain Python otherwise);
- ``rtcp_cy``    RTCP compound parse (SR, RR, SDES CNAME, BYE, XR VoIP metrics), reasons counted,
                 compiled like ``rtp_cy``;
- ``rtp``        the parsers' one import (RTP's and RTCP's), the reasons, ``looks_like_rtcp``;
- ``payload``    payload type clock rates and codec names;
- ``streams``    the simplified G.107 E-model (R-factor, MOS);
- ``discovery``  SDP offer/answer in SIP records -> expected (ip, port) -> Call-ID; heuristic;
                 ``MEDIA_BPF``, the static filter of the media socket;
- ``stage``      ``MediaStage``: records in, datagrams in, media records and counters out;
- ``fields``     the media record's fields, from which schemas/media-record.v1.json is generated;
- ``summary``    the media section of a call summary record.

Wiring for the engine::

    media = MediaStage(MediaConfig(interim_s=..., heuristic=...))
    sip sink:      media.on_sip_record(rec)       # before the datagrams that follow it
    datagram sink: media.feed(datagram)           # every UDP datagram (or feed_packet(...))
    about 1/s:     for r in media.flush(now_ns): emit(r)   # capture time offline, wall time live
    at the end:    for r in media.finish(): emit(r)
    metrics:       media.counters()               # plain numbers; histograms cumulative (le)
    call record:   media.hold_call(rec)           # before the sink: adds "media", or keeps it for a later flush
"""
