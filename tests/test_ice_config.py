"""ICE configuration as pure logic: TURN credentials, server lists, ordering and policy."""

from __future__ import annotations

import base64
import hashlib
import hmac

from p2pshare.config import IceConfig
from p2pshare.webrtc import _ice_servers
from signal_server.ice import ice_servers, turn_credentials


def test_turn_credentials_follow_coturn_rest_scheme() -> None:
    """username = expiry:label, password = base64(HMAC-SHA1(secret, username))."""
    username, password = turn_credentials("north-secret", 3600, 1_700_000_000.7)
    assert username == "1700003600:p2pshare"
    assert password == "zznN6FbBeSMhIhN1n7fe0wVxh2w="
    expected = hmac.new(b"north-secret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_server_list_has_stun_and_fresh_turn_credentials() -> None:
    """STUN goes out as is; TURN only with a secret, and the secret itself never."""
    servers = ice_servers(["stun:s:3478"], ["turn:t:3478"], "sekrit", 60, 1000.0)
    assert servers[0] == {"urls": ["stun:s:3478"]}
    assert servers[1]["urls"] == ["turn:t:3478"] and servers[1]["username"] == "1060:p2pshare"
    assert "sekrit" not in str(servers)
    assert ice_servers([], ["turn:t:3478"], None, 60, 0) == []
    assert ice_servers([], [], None, 60, 0) == []


def test_turn_over_tcp_is_tried_first_and_direct_only_drops_turn() -> None:
    """aiortc uses the first TURN URL: TCP comes first; --direct-only removes TURN."""
    server = {
        "urls": ["turn:t:3478?transport=udp", "stun:s:3478", "turn:t:3478?transport=tcp"],
        "username": "u",
        "credential": "c",
    }
    [ordered] = _ice_servers(IceConfig(servers=(server,)))
    assert ordered.urls == ["stun:s:3478", "turn:t:3478?transport=tcp", "turn:t:3478?transport=udp"]
    [direct] = _ice_servers(IceConfig(servers=(server,), policy="direct"))
    assert direct.urls == ["stun:s:3478"]
    assert IceConfig(servers=(server,)).has_turn()
    assert not IceConfig(servers=({"urls": "stun:s"},)).has_turn()
