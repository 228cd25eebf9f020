"""WebRTC offers as the media hub judges them: which sections, directions and codecs it can take (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import connection_kwargs

from tenderhall.settings import Settings

Role = Literal["publish", "view"]

MAX_OFFER_BYTES = 64 * 1024
# The only codecs the hub can forward without transcoding (and record into WebM).
FORWARDED = {"video": "vp8", "audio": "opus"}


class MediaRefused(Exception):
    """The hub will not take this offer or participant; `code` says precisely why, `status` is the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class OfferSection:
    """One m= section of an SDP offer, as the hub needs to judge it."""

    kind: str
    mid: str | None
    direction: str  # sendrecv | sendonly | recvonly | inactive, from the offerer's side
    codecs: tuple[str, ...]  # lowercase encoding names from a=rtpmap


def parse_offer(offer: Any) -> list[OfferSection]:
    """The media sections of `offer` ({"sdp": str, "type": "offer"}); MediaRefused when it is not a usable offer.

    Refuses: anything but an offer (code not_an_offer), an SDP over 64 KiB or without media
    (bad_offer), a section other than audio or video (unsupported_section), more than one
    audio or video section (too_many_sections), a video section without VP8 or an audio
    section without Opus (codec_unsupported): the hub forwards encoded frames as they come.
    """
    if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
        raise MediaRefused("not_an_offer", 'expected an SDP offer: {"sdp": "...", "type": "offer"}')
    text: str = offer["sdp"]
    if len(text) > MAX_OFFER_BYTES:
        raise MediaRefused("bad_offer", f"the offer is longer than {MAX_OFFER_BYTES} bytes")
    session_direction = "sendrecv"
    sections: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            port = parts[1] if len(parts) > 1 else "0"
            # RFC 3264 §6: port 0 is a rejected stream.
            sections.append({"kind": parts[0] if parts else "", "mid": None, "direction": None,
                             "codecs": [], "rejected": port == "0"})
        elif line.startswith("a="):
            attr = line[2:]
            target = sections[-1] if sections else None
            if attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if target is None:
                    session_direction = attr
                else:
                    target["direction"] = attr
            elif target is not None and attr.startswith("mid:"):
                target["mid"] = attr[4:].strip()
            elif target is not None and attr.startswith("rtpmap:"):
                fields = attr[7:].split(None, 1)
                if len(fields) == 2:
                    target["codecs"].append(fields[1].split("/")[0].strip().lower())
    if not sections:
        raise MediaRefused("bad_offer", "the offer has no media sections")
    result: list[OfferSection] = []
    seen: set[str] = set()
    for s in sections:
        kind = s["kind"]
        if kind not in FORWARDED:
            raise MediaRefused("unsupported_section", f"the offer has a {kind or 'nameless'} section; "
                                                      "the hub carries only audio and video")
        if kind in seen:
            raise MediaRefused("too_many_sections", f"the offer has more than one {kind} section; send one at most")
        seen.add(kind)
        if FORWARDED[kind] not in s["codecs"]:
            offered = ", ".join(dict.fromkeys(s["codecs"])) or "none"
            raise MediaRefused("codec_unsupported", f"the {kind} section (mid {s['mid']}) does not offer "
                                                    f"{'VP8' if kind == 'video' else 'Opus'} (offered: {offered}); "
                                                    "the hub forwards only VP8 video and Opus audio")
        direction = "inactive" if s["rejected"] else (s["direction"] or session_direction)
        result.append(OfferSection(kind, s["mid"], direction, tuple(s["codecs"])))
    return result


def answer_direction(role: Role, offered: str) -> str:
    """The hub's direction for a section: publishers' media is only received, viewers' only sent to.

    A viewer section that would send media to the hub (sendonly) is answered inactive, so
    the hub never accepts media from a viewer (RFC 3264 §6.1).
    """
    if role == "publish":
        return "recvonly" if offered in ("sendonly", "sendrecv") else "inactive"
    return "sendonly" if offered in ("recvonly", "sendrecv") else "inactive"


def ice_configuration(settings: Settings) -> RTCConfiguration:
    """ICE servers exactly as configured (none given means none: aiortc would otherwise add a public STUN server).

    MAX_BUNDLE: with aiortc's default, extra media sections are answered dead (aiortc #1414).
    Raises ValueError for a URL aiortc cannot parse, so a bad setting fails at start-up.
    """
    servers = [RTCIceServer(**server) for server in settings.ice_servers()]
    try:
        connection_kwargs(servers)  # parses every URL as each peer connection will
    except ValueError as exc:
        raise ValueError(f"rtc_ice_servers (TENDERHALL_ICE_SERVERS) has a bad STUN/TURN URL: {exc}") from None
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
