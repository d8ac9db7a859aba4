"""What a broker's refusal means: reason codes after which retrying cannot help."""

from __future__ import annotations

from typing import Any

# CONNACK reason codes (MQTT v5; paho maps v3.1.1 return codes onto them) after which retrying
# with the same settings cannot succeed. Mosquitto answers a wrong password with 0x87.
FATAL_CONNACK = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad username or password",
    0x87: "bad username or password (not authorized)",
    0x8A: "this client is banned",
    0x8C: "bad authentication method",
}


def fatal_refusal(reason_code: Any) -> str | None:
    """Why a refused connection cannot succeed on retry (paho ReasonCode), or None if it may."""
    return FATAL_CONNACK.get(reason_code.value)
