"""The TCP layer of tcpip, in parts (assembled into TcpLayer by stack/tcpip/tcp_glue.py)."""
