#!/usr/bin/env python3
# spec/tools/slowdns.py ADDR PORT DELAY RECORD...: a DNS server that answers
# every query after DELAY seconds (a slow zone for the resolver specs),
# each on its own thread, so that slow answers overlap as a real server's do.
# RECORD: NAME=PTR:TARGET or NAME=TXT:TEXT. A name it does not hold gets
# NXDOMAIN (after the same delay). Runs until it is signalled; malformed
# queries are dropped.
import socket, struct, sys, threading, time

addr, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
records = {}
for r in sys.argv[4:]:
    name, rest = r.split("=", 1)
    kind, value = rest.split(":", 1)
    records.setdefault((name.lower().rstrip("."), {"PTR": 12, "TXT": 16}[kind]), []).append(value)

def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def parse_question(data):
    if len(data) < 12:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(data):
            return None
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
    return ".".join(labels).lower(), qtype, pos + 4

def answer(sock, data, peer):
    q = parse_question(data)
    if q is None:
        return
    name, qtype, end = q
    time.sleep(delay)
    values = records.get((name, qtype), [])
    known = any(k[0] == name for k in records)
    rcode = 0 if known else 3
    flags = 0x8400 | (data[2] & 1) << 8 | rcode
    head = data[:2] + struct.pack("!HHHHH", flags, 1, len(values), 0, 0)
    body = data[12:end]
    for v in values:
        if qtype == 12:
            rdata = encode_name(v)
        else:
            raw = v.encode()
            rdata = b"".join(bytes([len(raw[i:i + 255])]) + raw[i:i + 255] for i in range(0, len(raw), 255))
        body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
    sock.sendto(head + body, peer)

sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((addr, port))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(4096)
    threading.Thread(target=answer, args=(sock, data, peer), daemon=True).start()
