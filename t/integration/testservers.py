"""Small upstream servers the proxy tests put behind sluice: a thread per
connection on a free loopback port, stopped by closing the listening
socket. TcpServer runs handle(sock, n) for each connection (n counts from
1); H2Server (python3-h2, prior knowledge) calls on_event(h2conn, event,
state, n) for every event of a connection, state being a dict of its
own, and stops the connection when on_event returns False."""

import socket
import threading

from conftest import SLOW


class TcpServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._run, args=(c, self.conns), daemon=True).start()

    def _run(self, c, n):
        c.settimeout(10 * SLOW)
        try:
            self.handle(c, n)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def handle(self, c, n):
        raise NotImplementedError

    def stop(self):
        self.sock.close()


class H2Server(TcpServer):
    def handle(self, c, n):
        import h2.config
        import h2.connection
        h = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        h.initiate_connection()
        c.sendall(h.data_to_send())
        state = {}
        while True:
            data = c.recv(65536)
            if not data:
                return
            for e in h.receive_data(data):
                if self.on_event(h, e, state, n) is False:
                    c.sendall(h.data_to_send())
                    return
            c.sendall(h.data_to_send())

    def on_event(self, h, e, state, n):
        raise NotImplementedError
