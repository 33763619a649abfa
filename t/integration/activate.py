"""A minimal socket-activation launcher, as systemd does it: bind and
listen on each ADDR (IPv4 "host:port", without SO_REUSEPORT), put the
sockets at fd 3, 4, ..., set LISTEN_FDS and LISTEN_PID (this process's
pid, which exec keeps) and exec the command.

usage: activate.py ADDR [ADDR...] -- COMMAND [ARGS...]"""

import os
import socket
import sys


def main():
    sep = sys.argv.index("--")
    addrs, argv = sys.argv[1:sep], sys.argv[sep + 1:]
    socks = []
    for a in addrs:
        host, port = a.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, int(port)))
        s.listen(128)
        socks.append(s)
    high = [os.dup(s.fileno()) for s in socks]  # out of the way of 3, 4, ...
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()))
    os.execve(argv[0], argv, env)


main()
