"""Wire-format helpers shared by the hardware and the protocol layers (neither owns them).

The NIC's offload engines and tcpip both compute Internet checksums; the
checksum lives here so that stack.nic does not import from stack.tcpip.
"""
