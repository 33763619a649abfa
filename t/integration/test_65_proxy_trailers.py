"""Trailers through the proxy, both ways: a client's request trailers
reach the upstream (after the last chunk of an HTTP/1.1 chunked body, or
as a trailing HEADERS frame to an HTTP/2 upstream), and the upstream's
response trailers reach the client. Clients: python3-h2 and a raw
HTTP/1.1 socket; upstreams: a raw HTTP/1.1 server and a python3-h2 server,
each answering with what it received (JSON) and echoing the request
trailers as response trailers "x-echo-NAME"."""

import json
import socket

import pytest

from conftest import SLOW
from test_60_proxy import proxy_server
from testservers import H2Server, TcpServer

h2conn = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.events  # noqa: E402


def answer(got_body, got_trailers):
    body = json.dumps({"body": got_body.decode(), "trailers": got_trailers}).encode()
    trailers = [("x-echo-" + k, v) for k, v in got_trailers] + [("x-up", "done")]
    return body, trailers


class H1Upstream(TcpServer):
    """HTTP/1.1, one request per connection: reads a chunked (or
    Content-Length) body with its trailer section, answers chunked with
    trailers and closes."""

    def handle(self, c, n):
        f = c.makefile("rb")
        head = []
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            head.append(line.decode().rstrip("\r\n"))
        fields = dict((h.split(":", 1)[0].lower(), h.split(":", 1)[1].strip())
                      for h in head[1:])
        body, trailers = b"", []
        if fields.get("transfer-encoding") == "chunked":
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    break
                body += f.read(size)
                f.readline()
            while True:
                line = f.readline().decode().rstrip("\r\n")
                if not line:
                    break
                k, v = line.split(":", 1)
                trailers.append([k.lower(), v.strip()])
        elif "content-length" in fields:
            body = f.read(int(fields["content-length"]))
        out, echo = answer(body, trailers)
        resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        resp += b"%x\r\n%s\r\n0\r\n" % (len(out), out)
        resp += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in echo) + b"\r\n"
        c.sendall(resp)


class H2Upstream(H2Server):
    """HTTP/2 prior knowledge (python3-h2): gathers each stream's body and
    trailers, answers at its end with the JSON and echoed trailers."""

    def on_event(self, h, e, state, n):
        bodies = state.setdefault("bodies", {})
        trailers = state.setdefault("trailers", {})
        if isinstance(e, h2.events.RequestReceived):
            bodies[e.stream_id] = b""
        elif isinstance(e, h2.events.DataReceived):
            bodies[e.stream_id] += e.data
            h.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.TrailersReceived):
            trailers[e.stream_id] = [[k.decode(), v.decode()] for k, v in e.headers]
        elif isinstance(e, h2.events.StreamEnded):
            out, echo = answer(bodies[e.stream_id], trailers.get(e.stream_id, []))
            h.send_headers(e.stream_id, [(":status", "200")])
            h.send_data(e.stream_id, out)
            h.send_headers(e.stream_id, echo, end_stream=True)


def h2_client_call(port, body, trailers):
    """One POST from a python3-h2 client with body and trailers; returns
    (status, body, response trailers)."""
    c = h2conn.H2Connection(config=h2.config.H2Configuration(client_side=True))
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    c.initiate_connection()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/t"),
                         (":authority", "localhost")])
    c.send_data(sid, body)
    c.send_headers(sid, trailers, end_stream=True)
    s.sendall(c.data_to_send())
    status, got, tr = None, b"", []
    try:
        while True:
            data = s.recv(65536)
            assert data, "connection closed"
            for e in c.receive_data(data):
                if isinstance(e, h2.events.ResponseReceived):
                    status = dict(e.headers)[b":status"].decode()
                elif isinstance(e, h2.events.DataReceived):
                    got += e.data
                    c.acknowledge_received_data(e.flow_controlled_length, sid)
                elif isinstance(e, h2.events.TrailersReceived):
                    tr = [(k.decode(), v.decode()) for k, v in e.headers]
                elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return status, got, tr
            s.sendall(c.data_to_send())
    finally:
        s.close()


def h1_client_call(port, body, trailers):
    """One chunked POST with a trailer section over a raw socket; returns
    (status, body, response trailers) from the chunked answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    req = b"POST /t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n" \
          b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(body), body)
    req += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in trailers) + b"\r\n"
    s.sendall(req)
    f = s.makefile("rb")
    try:
        status = f.readline().split()[1].decode()
        head = {}
        while True:
            line = f.readline().decode().rstrip("\r\n")
            if not line:
                break
            k, v = line.split(":", 1)
            head[k.lower()] = v.strip()
        assert head.get("transfer-encoding") == "chunked", head
        got = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                break
            got += f.read(size)
            f.readline()
        tr = []
        while True:
            line = f.readline().decode().rstrip("\r\n")
            if not line:
                break
            k, v = line.split(":", 1)
            tr.append((k.lower(), v.strip()))
        return status, got, tr
    finally:
        s.close()


@pytest.mark.parametrize("client", ["h2", "h1"])
@pytest.mark.parametrize("upstream", ["http/1.1", "h2c"])
def test_trailers_both_ways(sluice_factory, client, upstream):
    app = H1Upstream() if upstream == "http/1.1" else H2Upstream()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                         up_extra={"protocol": upstream, "keepalive": 0})
        call = h2_client_call if client == "h2" else h1_client_call
        sent = [("x-checksum", "abc123"), ("grpc-status", "0")]
        if client == "h1":
            sent.append(("content-length", "99"))  # framing: never forwarded
        status, body, tr = call(s.h2c_port, b"hello trailers", sent)
        assert status == "200", (status, body)
        got = json.loads(body)
        assert got["body"] == "hello trailers"
        assert got["trailers"] == [["x-checksum", "abc123"], ["grpc-status", "0"]], got
        assert ("x-echo-x-checksum", "abc123") in tr and ("x-up", "done") in tr, tr
        assert not any(k == "x-echo-content-length" for k, _ in tr), tr
    finally:
        app.stop()


def test_request_without_trailers_unchanged(sluice_factory):
    """No trailers: an HTTP/1.1 upstream still gets Content-Length framing
    from an HTTP/2 client that declared it, and an empty trailer section."""
    app = H1Upstream()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                         up_extra={"keepalive": 0})
        status, body, tr = h1_client_call(s.h2c_port, b"plain", [])
        assert status == "200" and json.loads(body) == {"body": "plain", "trailers": []}
        assert tr == [("x-up", "done")], tr
    finally:
        app.stop()
