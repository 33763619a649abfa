# sluice - SPDX-License-Identifier: MIT
#
# What every raw test client (h1raw, h2raw, wsraw) does with its socket:
# close quietly, work as a context manager, and send all bytes while
# reporting a peer that has gone away as False instead of raising. Also the
# one client TLS context every test uses against the self-signed test
# certificate (conftest re-exports it).
import socket
import ssl


def client_ssl(alpn=None, min_version=None, max_version=None):
    """A client context that accepts the test certificate, with ALPN and
    TLS versions when asked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


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
