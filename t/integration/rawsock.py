# sluice - SPDX-License-Identifier: MIT
#
# What every raw test client (h1raw, h2raw, wsraw) does with its socket:
# close quietly, work as a context manager, and send all bytes while
# reporting a peer that has gone away as False instead of raising.
import socket
import ssl


class SockConn:
    sock = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        """Send all of data; False when the peer has closed (or stopped
        reading for longer than the socket timeout)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            return False
