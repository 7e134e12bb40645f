"""The only asyncio code: server (sockets, signals), socket connections, guest rings, live update."""
