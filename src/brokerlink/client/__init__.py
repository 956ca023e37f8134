"""The brokerlink Python client: REST v1 and the ``/v1/stream`` WebSocket, async and sync."""
