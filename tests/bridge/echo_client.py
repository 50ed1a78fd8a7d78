"""A real TCP echo client: sends SIZE deterministic bytes while reading the echo; prints OK or MISMATCH.

    python echo_client.py HOST PORT SIZE
"""

from __future__ import annotations

import hashlib
import socket
import sys
import threading


def pattern(size: int) -> bytes:
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(b"wskdbg-echo" + block.to_bytes(8, "big")).digest()
        block += 1
    return bytes(out[:size])


def echo(host: str, port: int, size: int, timeout: float = 60.0) -> bytes:
    payload = pattern(size)
    sock = socket.create_connection((host, port), timeout=timeout)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    with sock:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += chunk
        sender.join(timeout)
    if errors:
        raise errors[0]
    return bytes(received)


def main() -> int:
    host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    received = echo(host, port, size)
    if received == pattern(size):
        print(f"OK {len(received)}")
        return 0
    first_bad = next((i for i, (a, b) in enumerate(zip(received, pattern(size))) if a != b), min(len(received), size))
    print(f"MISMATCH got {len(received)} of {size} bytes, first difference at {first_bad}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
