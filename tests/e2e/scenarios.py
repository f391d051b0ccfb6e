"""SIPp caller scenarios, written per call: a customer who keeps sending speech (continuous
RTP, as a carrier does), presses keys at given moments (RFC 2833, see rtp.py) and either
hangs up after a while or waits for Asterisk to hang up."""

from __future__ import annotations

from xml.sax.saxutils import escape

_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_}
      To: <sip:[service]@[remote_ip]:[remote_port]>{peer_tag}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: sip:[field0]@[local_ip]:[local_port]
      Max-Forwards: 70"""

# The caller's number is the From user and display name (an -inf CSV field).
DEFAULT_FROM = '"[field0]" <sip:[field0]@[local_ip]:[local_port]>'


def _invite(from_: str, extra: str) -> str:
    return """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      """ + _HEADERS.format(from_=from_ + ";tag=[pid]SIPpTag09[call_number]", peer_tag="",
                            cseq="1 INVITE") + extra + """
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      """ + _HEADERS.format(from_=from_ + ";tag=[pid]SIPpTag09[call_number]",
                            peer_tag="[peer_tag_param]", cseq="1 ACK") + """
      Content-Length: 0
    ]]>
  </send>
"""


def _bye(from_: str) -> str:
    return """  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      """ + _HEADERS.format(from_=from_ + ";tag=[pid]SIPpTag09[call_number]",
                            peer_tag="[peer_tag_param]", cseq="2 BYE") + """
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
"""


_ANSWER_BYE = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""


def caller_scenario(*, pcap: str, hangup_after: float | None = None,
                    accept_bye: bool = False, from_: str = DEFAULT_FROM,
                    headers: tuple[str, ...] = ()) -> str:
    """The caller's RTP (with its key presses) is one pcap (see rtp.py) played from the
    answer on. hangup_after: seconds after the answer the caller hangs up; None means the
    caller stays on the line until Asterisk hangs up. accept_bye: with hangup_after, a BYE
    from the server before then ends the call normally (closed hours, a message) instead of
    aborting it as unexpected. from_: the From header without its tag (a carrier's withheld
    caller: '"Anonymous" <sip:anonymous@anonymous.invalid>'); headers: extra INVITE header
    lines ("Privacy: id")."""
    assert all("]]>" not in h and "\n" not in h for h in (from_, *headers))  # inside CDATA
    extra = "".join(f"\n      {h}" for h in headers)
    body = [_invite(from_, extra),
            f'  <nop><action><exec play_pcap_audio="{escape(pcap)}"/></action></nop>\n']
    if hangup_after is not None and accept_bye:
        ms = round(hangup_after * 1000)
        body.append(f'  <recv request="BYE" timeout="{ms}" ontimeout="caller_hangs_up"/>\n')
        body.append(_ANSWER_BYE)
        body.append('  <nop next="done"/>\n  <label id="caller_hangs_up"/>\n')
        body.append(_bye(from_))
        body.append('  <label id="done"/>\n')
    elif hangup_after is not None:
        body.append(f'  <pause milliseconds="{round(hangup_after * 1000)}"/>\n')
        body.append(_bye(from_))
    else:
        body.append('  <recv request="BYE"/>\n')
        body.append(_ANSWER_BYE)
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            '<scenario name="IVR caller">\n' + "".join(body) + "</scenario>\n")
