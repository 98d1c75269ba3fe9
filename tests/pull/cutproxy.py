#!/usr/bin/env python3
"""A registry that goes down mid-pull: a TCP relay on 127.0.0.1 for the pull e2e test.

    cutproxy.py LISTEN_PORT UPSTREAM_PORT CUT_BYTES [stall]

Relays connections to 127.0.0.1:UPSTREAM_PORT until CUT_BYTES bytes have gone from the
upstream to the clients in all; then it resets every open connection (a body stops
mid-way) and closes its listening socket, so later connections are refused. Prints "cut"
on stderr when it does. With "stall", it instead stops relaying and holds every
connection open (a hung server), printing "stalled".
"""

import socket
import struct
import sys
import threading

import time

listen_port, upstream_port, cut_bytes = (int(a) for a in sys.argv[1:4])
stall = sys.argv[4:] == ["stall"]
lock = threading.Lock()
sent = 0
open_socks = []
down = threading.Event()


def reset(s):
    try:
        # SO_LINGER 0: close with RST, as a dying server's kernel would.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


def cut():
    if down.is_set():
        return
    down.set()
    print("cut", file=sys.stderr, flush=True)
    try:
        listener.close()
    except OSError:
        pass
    for s in list(open_socks):
        reset(s)


def pump(src, dst, count):
    global sent
    try:
        while not down.is_set():
            data = src.recv(16384)
            if not data:
                break
            if count:
                with lock:
                    room = cut_bytes - sent
                    sent += len(data)
                if room < len(data):
                    if room > 0:
                        dst.sendall(data[:room])
                    if stall:
                        print("stalled", file=sys.stderr, flush=True)
                        while True:
                            time.sleep(3600)
                    cut()
                    return
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
while not down.is_set():
    try:
        client, _ = listener.accept()
    except OSError:
        break
    if down.is_set():
        reset(client)
        break
    upstream = socket.create_connection(("127.0.0.1", upstream_port))
    open_socks += [client, upstream]
    threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()
# Stay alive (down) until killed, so the test's cleanup finds the process it started.
threading.Event().wait()
