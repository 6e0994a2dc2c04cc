"""The embedded Python client: `Client` (asyncio) and `SyncClient` (blocking)."""

from qnode.client.client import Client, Consumption, Message, Queue, Sent
from qnode.client.connection import ConnectionLost
from qnode.client.sync import SyncClient, SyncMessage, SyncQueue

__all__ = ["Client", "ConnectionLost", "Consumption", "Message", "Queue", "Sent", "SyncClient",
           "SyncMessage", "SyncQueue"]
