"""The numbers the SCTP, large-packet and socket changes share: sizes, timers and markers.

Constants only, importing nothing of p2pshare: ``sctp_changes``, ``large`` and ``sockets`` read
them from here, so none of them imports the package that installs them (no import cycle).
What each number is for is said where it is defined; the package docstring says why.
"""

from __future__ import annotations

from aiortc import rtcsctptransport as sctp

SACK_EVERY_PACKETS = 2
SACK_DELAY_S = 0.020

BASE_USERDATA_BYTES: int = sctp.USERDATA_MAX_LENGTH
"""User data per DATA chunk at the 1,200-byte base every WebRTC stack accepts (1,160)."""
SCTP_OVERHEAD_BYTES = sctp.SCTP_COMMON_HEADER_LENGTH + sctp.SCTP_DATA_CHUNK_HEADER_LENGTH
LARGE_PACKET_BYTES = 64_844
"""The large SCTP packet: 64,816 bytes of user data plus 28 of headers, carried in one UDP
datagram as four DTLS records (a record holds at most 16,384 bytes of plaintext; RFC 6347
allows several records per datagram): 64,844 + 4 x 37 (AES-GCM) + 8 (UDP) = 65,000 bytes, under
the 65,507 a UDP datagram can carry; 44 IP fragments on a 1,500-byte MTU. Four such chunks are
one 259,264-byte message (within the 256 KiB aiortc and browsers advertise). A peer of the
previous version offers 16,232 (one record per datagram), and the smaller offer is used."""
DTLS_PLAINTEXT_BYTES = 16_384
"""The most plaintext one DTLS record carries (RFC 6347, 2^14)."""
DTLS_DATAGRAM_READ_BYTES = 66 * 1024
"""Buffer for the records of one large datagram, read from OpenSSL's memory BIO at once."""
LARGE_MESSAGE_LIMIT_BYTES = 256 * 1024
"""What we send a peer that advertises messages of any size (max-message-size 0)."""
DTLS_RECORD_READ_BYTES = 17 * 1024
"""Buffer for one large DTLS record (plaintext at most 16,384 bytes, plus header and tag)."""
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 0.3
SMALLER_PROBE_BYTES = 16_232
"""Probed next when three probes of the agreed size were lost (RFC 8899's search, one step):
one DTLS record per datagram, 11 fragments on a 1,500-byte MTU. At 1% loss per IP packet a
64 KB probe is lost 36% of the time (three in a row: 5%), a 16 KB one 11%."""
BLACK_HOLE_T3_STRIKES = 2
"""Consecutive retransmission timeouts, with no acknowledgement between them, while a large
chunk is the oldest outstanding one: the path has stopped carrying large packets."""
LOST_LARGE_BUDGET = 12
LOST_LARGE_WINDOW_S = 30.0
"""Fall back once this many 64 KB packets were lost within the window, or as many IP fragments'
worth of smaller ones (48 of 16 KB). A receiver holds the fragments of every incomplete
datagram until it gives up on it (Linux: 30 s), within a budget (Linux:
net.ipv4.ipfrag_high_thresh, 4 MiB); beyond it the kernel drops every new fragment, which is a
black hole for large packets. 12 incomplete datagrams of 44 fragments hold about 1.3 MiB (with
the kernel's per-fragment overhead), well inside that budget."""
LOST_LARGE_RATIO = 0.03
LOST_LARGE_MIN_LOSSES = 4
"""Also fall back once more than 3% of the large packets sent were lost (after at least 4
losses): on a 1,500-byte MTU a large packet is 44 IP fragments, so 1% loss per IP packet is
~36% per large packet, and each lost one leaves fragments in the receiver's memory."""
REPROBE_AFTER_S = 30.0
"""After a fall-back, probe again this much later (RFC 8899's raise timer, shortened to the
time a Linux receiver keeps incomplete datagrams: by then their memory is free again)."""
SEGMENT_PAYLOAD_BYTES = 1100
"""A large chunk sent again goes as segments of this size, each in its own DTLS record and
datagram, which never depend on IP fragments (see :func:`_resend`)."""
RESEND_COPIES = 2
"""Each segment of a resent large packet is sent twice (all of them, then all again). SCTP
fast-retransmits a chunk once; if that copy is lost too, only the retransmission timeout
recovers it, a stall of at least LARGE_RTO_MIN_S with the window back at one packet. A 64 KB
packet is 59 segments: at 1% loss per IP packet one copy of them all arrives 55% of the time,
two copies 99.4%, better than a base-size packet's 99%. The cost is one more large packet's
bytes per large packet lost."""
SEGMENT_MAGIC = b"\xffp2s"
"""Opens a segment's plaintext; an SCTP packet opens with its source port (5000 in WebRTC)."""
SEGMENTS_KEPT = 256
DATAGRAM_SEGMENT_BYTES = 1_372
"""A large packet's datagram in segments (UDP GSO, see ``sockets.py``): each segment, its
8-byte header included, is a UDP datagram of this size (1,400 bytes of IPv4 packet: within a
1,500-byte Ethernet MTU, PPPoE's 1,492 and WireGuard's 1,420). A 64 KB packet's 65,000-byte
datagram is 48 of them, within the 64 segments Linux accepts in one send."""
DATAGRAM_SEGMENT_MARKER = 0x3E
"""Opens every segment: within 20-63, which RFC 7983 gives to DTLS (so ICE hands it on), but
no DTLS content type (20-26)."""
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
LARGE_RTO_MIN_S = 0.2
"""Minimum retransmission timeout on associations between two p2pshare peers that agreed on
large packets (upstream and RFC 4960: 1 s, kept for everyone else; Linux TCP uses 0.2 s).
At 1% loss a timeout otherwise stalls a transfer for a whole second."""
PROBE_MAGIC = b"p2pshare-pmtu-probe"
PAD_CHUNK_TYPE = 0x84  # RFC 4820; receivers that do not know it skip it
HEARTBEAT_INFO = 1
SEGMENTS_MERGED_PARAM = 0x7E01
"""In a HEARTBEAT ACK to a probe: the probe's UDP segments arrived merged (UDP GRO)."""
