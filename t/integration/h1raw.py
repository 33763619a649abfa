"""Raw HTTP/1.1 client for the integration tests: sends bytes exactly as
given (smuggling vectors, pipelining, slow headers) and parses responses
strictly (status line, headers, content-length / chunked / until-close
bodies, chunk sizes and trailers kept for the tests). Bounded by timeouts.
"""

import socket
import ssl
import time

from rawsock import SockConn, client_ssl


class Closed(Exception):
    pass


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []        # [(lower-case name, value)]
        self.body = b""
        self.chunks = []         # sizes of chunks when chunked
        self.trailers = []
        self.informational = []  # [Response] (1xx before this one)
        self.raw_head = b""

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n == name]

    @property
    def chunked(self):
        te = self.header("transfer-encoding")
        return te is not None and te.lower().strip().endswith("chunked")

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s len=%d>" % (self.status, self.reason, len(self.body))


class H1Conn(SockConn):
    def __init__(self, port, host="127.0.0.1", tls=False, timeout=10.0, sni="localhost",
                 alpn=("http/1.1",)):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = client_ssl(alpn=alpn)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=sni)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        return super().send(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading; have %r" % bytes(self.buf[:200]))
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out reading; have %r" % bytes(self.buf[:200]))
        except (ConnectionResetError, ssl.SSLError, OSError):
            d = b""
        if not d:
            self.eof = True
            raise Closed("connection closed; have %r" % bytes(self.buf[:200]))
        self.buf += d

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill(deadline)

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, deadline):
        r = Response()
        line = self._line(deadline)
        head = [line]
        parts = line.decode("latin-1").split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), "bad status line %r" % line
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            line = self._line(deadline)
            head.append(line)
            if not line:
                break
            assert b":" in line, "bad header line %r" % line
            n, v = line.split(b":", 1)
            assert n == n.strip() and n, "bad header name %r" % n
            r.headers.append((n.decode("latin-1").lower(), v.strip().decode("latin-1")))
        r.raw_head = b"\r\n".join(head)
        return r

    def read_response(self, head=False, timeout=None):
        """One final response (1xx collected into .informational)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        infos = []
        while True:
            r = self.read_head(deadline)
            if 100 <= r.status < 200 and r.status != 101:
                infos.append(r)
                continue
            break
        r.informational = infos
        if head or r.status in (204, 304) or r.status == 101:
            return r
        if r.chunked:
            body = bytearray()
            while True:
                line = self._line(deadline)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                body += self._exact(size, deadline)
                r.chunks.append(size)
                assert self._exact(2, deadline) == b"\r\n", "chunk not followed by CRLF"
            while True:
                line = self._line(deadline)
                if not line:
                    break
                n, v = line.split(b":", 1)
                r.trailers.append((n.decode().strip().lower(), v.strip().decode("latin-1")))
            r.body = bytes(body)
        elif r.header("content-length") is not None:
            r.body = self._exact(int(r.header("content-length")), deadline)
        else:
            # body until close
            try:
                while True:
                    self._fill(deadline)
            except Closed:
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
        return r

    def read_informational(self, timeout=None):
        """Read one head that must be a 1xx (e.g. 100 Continue)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self.read_head(deadline)

    def wait_closed(self, timeout=5.0):
        """True when the server closes within timeout (extra bytes kept)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return True
        except TimeoutError:
            return False

    def read_all(self, timeout=5.0):
        """Everything until close or timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except (Closed, TimeoutError):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def request(method, path, headers=(), body=b"", host="localhost", version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, path, version), "Host: %s" % host]
    lines += ["%s: %s" % (n, v) for n, v in headers]
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body if isinstance(body, bytes) else body.encode())


def chunked(body, size=1000, trailers=(), ext=False):
    out = bytearray()
    for i in range(0, len(body), size):
        c = body[i:i + size]
        out += ("%x%s\r\n" % (len(c), ";ext=1" if ext else "")).encode() + c + b"\r\n"
    out += b"0\r\n"
    for n, v in trailers:
        out += ("%s: %s\r\n" % (n, v)).encode()
    out += b"\r\n"
    return bytes(out)
