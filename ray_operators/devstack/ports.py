"""Free loopback ports for the local services (standard library only).

Picking a port means binding port 0 and closing the socket: the OS may hand the same port out
again on the next pick. A service that needs several ports takes them from one :func:`free_ports`
call, which holds every socket open until all are picked, so they are distinct.
"""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on loopback that nothing listens on right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One free TCP port on loopback (for a service that needs only one)."""
    return free_ports(1)[0]


def free_port_pair(offset: int) -> int:
    """A free port ``p`` such that ``p + offset`` is free too (for a port a service derives)."""
    for _ in range(200):
        port = free_port()
        if port + offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free pair of ports {offset} apart")
