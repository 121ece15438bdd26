"""restream client for Python services and notebooks: subscribe over WebSocket, keep each
channel's items by the protocol's seq rule (docs/protocol.md), reconnect and resume.

    async with Client("ws://127.0.0.1:7999/ws") as client:
        quakes = await client.subscribe("usgs-earthquakes", {"feed": "2.5_day"})
        async for change in quakes.changes():
            print(change.type, change.seq, change.id, len(quakes.items))
"""

from .client import PROTOCOL_VERSION, Channel, Client, RestreamError, backoff_delay
from .state import Applied, Change, ChannelState, PatchError, apply_patch, id_key

__all__ = [
    "PROTOCOL_VERSION", "Applied", "Change", "Channel", "ChannelState", "Client", "PatchError",
    "RestreamError", "apply_patch", "backoff_delay", "id_key",
]
