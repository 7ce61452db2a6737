#!/usr/bin/env python3
"""Helpers of the NAT lab (tests/natlab/run.sh). Python standard library only.

  natlab.py stun-server IP1 IP2 [IP1 IP2 ...] --ports P1 P2
      A STUN binding server (RFC 5389 answers, RFC 5780 CHANGE-REQUEST): it listens on every
      IP x port given and answers from the other address and/or port when asked. The lab's
      self-check classifies each NAT with it, and miniupnpd uses it to learn that its WAN is
      not filtered (it refuses RFC 5737 WAN addresses otherwise).
  natlab.py classify IP1 IP2 --ports P1 P2 [--expect TYPE]
      Classifies the NAT between here and the STUN server (RFC 4787 terms): mapping and
      filtering behaviour, whether the port is kept; prints one line; exit 1 if not TYPE.
  natlab.py natpmp GW --internal-port P      NAT-PMP: external address, map P (UDP), print it
  natlab.py natpmp GW --internal-port P --delete
  natlab.py pcp GW --client IP --internal-port P [--delete]   PCP (RFC 6887) MAP
  natlab.py recv --port P [--timeout S]      wait for one datagram, print its source (exit 1 if none)
  natlab.py send IP PORT                     send three datagrams
  natlab.py http-ok URL [--timeout S]        exit 0 if GET URL answers 200 (TCP reachability)
"""

import argparse
import ipaddress
import os
import select
import socket
import struct
import sys
import time
import urllib.request

MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ATTR_MAPPED = 0x0001
ATTR_CHANGE_REQUEST = 0x0003
ATTR_XOR_MAPPED = 0x0020
CHANGE_IP = 0x4
CHANGE_PORT = 0x2


def family_of(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def any_addr(ip):
    return "::" if ":" in ip else "0.0.0.0"


# ---- STUN encoding ---------------------------------------------------------------------


def stun_request(change_ip=False, change_port=False):
    tid = os.urandom(12)
    flags = (CHANGE_IP if change_ip else 0) | (CHANGE_PORT if change_port else 0)
    attrs = struct.pack("!HHI", ATTR_CHANGE_REQUEST, 4, flags)
    return tid, struct.pack("!HHI12s", BINDING_REQUEST, len(attrs), MAGIC, tid) + attrs


def encode_address(attr, ip, port, xor, tid):
    raw = ipaddress.ip_address(ip).packed
    fam = 1 if len(raw) == 4 else 2
    if xor:
        port ^= MAGIC >> 16
        key = struct.pack("!I", MAGIC) + tid
        raw = bytes(b ^ key[i] for i, b in enumerate(raw))
    body = struct.pack("!BBH", 0, fam, port) + raw
    return struct.pack("!HH", attr, len(body)) + body


def stun_response(tid, ip, port):
    attrs = encode_address(ATTR_XOR_MAPPED, ip, port, True, tid) + encode_address(
        ATTR_MAPPED, ip, port, False, tid
    )
    return struct.pack("!HHI12s", BINDING_SUCCESS, len(attrs), MAGIC, tid) + attrs


def parse_request(data):
    """(transaction id, change flags) of a binding request, or None."""
    if len(data) < 20:
        return None
    typ, length, magic, tid = struct.unpack("!HHI12s", data[:20])
    if typ != BINDING_REQUEST or magic != MAGIC or 20 + length > len(data):
        return None
    flags, pos = 0, 20
    while pos + 4 <= 20 + length:
        attr, alen = struct.unpack("!HH", data[pos : pos + 4])
        if attr == ATTR_CHANGE_REQUEST and alen == 4:
            (flags,) = struct.unpack("!I", data[pos + 4 : pos + 8])
        pos += 4 + ((alen + 3) & ~3)
    return tid, flags


def parse_response(data, tid):
    """(ip, port) from the XOR-MAPPED-ADDRESS of a success response to `tid`, or None."""
    if len(data) < 20:
        return None
    typ, length, magic, rtid = struct.unpack("!HHI12s", data[:20])
    if typ != BINDING_SUCCESS or magic != MAGIC or rtid != tid:
        return None
    pos = 20
    while pos + 4 <= min(len(data), 20 + length):
        attr, alen = struct.unpack("!HH", data[pos : pos + 4])
        val = data[pos + 4 : pos + 4 + alen]
        if attr == ATTR_XOR_MAPPED and len(val) >= 8:
            fam, xport = struct.unpack("!xBH", val[:4])
            key = struct.pack("!I", MAGIC) + tid
            raw = bytes(b ^ key[i] for i, b in enumerate(val[4 : 4 + (4 if fam == 1 else 16)]))
            return str(ipaddress.ip_address(raw)), xport ^ (MAGIC >> 16)
        pos += 4 + ((alen + 3) & ~3)
    return None


# ---- STUN server -----------------------------------------------------------------------


def stun_server(args):
    ips, ports = args.ips, args.ports
    if len(ips) % 2 or len(ports) != 2:
        sys.exit("stun-server: IPs come in pairs (primary, alternate), two ports")
    socks = {}  # (pair, ip index, port index) -> socket
    for pair in range(len(ips) // 2):
        for i in range(2):
            ip = ips[2 * pair + i]
            for j, port in enumerate(ports):
                s = socket.socket(family_of(ip), socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
                socks[(pair, i, j)] = s
    where = {s: key for key, s in socks.items()}
    print(f"stun-server: listening on {len(socks)} sockets", flush=True)
    while True:
        ready, _, _ = select.select(list(socks.values()), [], [])
        for s in ready:
            try:
                data, src = s.recvfrom(2048)
            except OSError:
                continue
            req = parse_request(data)
            if req is None:
                continue
            tid, flags = req
            pair, i, j = where[s]
            i ^= 1 if flags & CHANGE_IP else 0
            j ^= 1 if flags & CHANGE_PORT else 0
            try:
                socks[(pair, i, j)].sendto(stun_response(tid, src[0], src[1]), src[:2])
            except OSError:
                pass


# ---- NAT classification ----------------------------------------------------------------


def transact(sock, dest, change_ip=False, change_port=False, tries=3, wait=0.3):
    tid, msg = stun_request(change_ip, change_port)
    for _ in range(tries):
        try:
            sock.sendto(msg, dest)
        except OSError:
            return None  # no route (an IPv4-only player asking over IPv6, ...)
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not select.select([sock], [], [], left)[0]:
                break
            data, _ = sock.recvfrom(2048)
            mapped = parse_response(data, tid)
            if mapped:
                return mapped
    return None


def fresh(ip):
    s = socket.socket(family_of(ip), socket.SOCK_DGRAM)
    s.bind((any_addr(ip), 0))
    return s


def local_ip_towards(ip, port):
    t = socket.socket(family_of(ip), socket.SOCK_DGRAM)
    try:
        t.connect((ip, port))
        return t.getsockname()[0]
    finally:
        t.close()


def nat_type(natted, mapping, filtering):
    if not natted:
        return "public" if filtering == "endpoint-independent" else "firewall"
    if mapping != "endpoint-independent":
        return "symmetric"
    return {
        "endpoint-independent": "full-cone",
        "address-dependent": "restricted-cone",
        "address-and-port-dependent": "port-restricted-cone",
    }[filtering]


def classify(args):
    ip1, ip2 = args.ips
    p1, p2 = args.ports
    s = fresh(ip1)
    local = (local_ip_towards(ip1, p1), s.getsockname()[1])
    m1 = transact(s, (ip1, p1))
    if m1 is None:
        kind = "udp-blocked"
        print(f"no answer over UDP from {ip1}:{p1} => {kind}")
    else:
        m2 = transact(s, (ip1, p2))
        m3 = transact(s, (ip2, p1))
        if m2 is None or m3 is None:
            sys.exit(f"classify: the STUN server answered once only ({m1} {m2} {m3})")
        if m1 == m2 == m3:
            mapping = "endpoint-independent"
        elif m1 == m2:
            mapping = "address-dependent"
        else:
            mapping = "address-and-port-dependent"
        if transact(fresh(ip1), (ip1, p1), change_ip=True, change_port=True):
            filtering = "endpoint-independent"
        elif transact(fresh(ip1), (ip1, p1), change_port=True):
            filtering = "address-dependent"
        else:
            filtering = "address-and-port-dependent"
        natted = m1 != local
        kind = nat_type(natted, mapping, filtering)
        ports = " ".join(str(m[1]) for m in (m1, m2, m3))
        kept = "port kept" if m1[1] == local[1] else "port changed"
        print(
            f"local {fmt(local)} seen as {fmt(m1)} ({'NAT, ' + kept if natted else 'no NAT'};"
            f" external ports towards 3 destinations: {ports}); mapping {mapping};"
            f" filtering {filtering} => {kind}"
        )
    if args.expect and kind != args.expect:
        print(f"classify: FAIL: expected {args.expect}, found {kind}")
        sys.exit(1)


def fmt(addr):
    ip, port = addr
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ---- NAT-PMP and PCP -------------------------------------------------------------------


def udp_ask(dest, msg, tries=3, wait=0.5):
    s = socket.socket(family_of(dest[0]), socket.SOCK_DGRAM)
    for _ in range(tries):
        s.sendto(msg, dest)
        if select.select([s], [], [], wait)[0]:
            return s.recvfrom(1100)[0]
    return None


def natpmp(args):
    gw = (args.gateway, 5351)
    r = udp_ask(gw, struct.pack("!BB", 0, 0))
    if r is None or len(r) < 12:
        sys.exit("natpmp: no answer to the external-address request")
    _, op, result, _epoch = struct.unpack("!BBHI", r[:8])
    if op != 128 or result != 0:
        sys.exit(f"natpmp: external-address request failed (op {op}, result {result})")
    ext = socket.inet_ntoa(r[8:12])
    lifetime = 0 if args.delete else 120
    want = 0 if args.delete else args.internal_port
    r = udp_ask(gw, struct.pack("!BBHHHI", 0, 1, 0, args.internal_port, want, lifetime))
    if r is None or len(r) < 16:
        sys.exit("natpmp: no answer to the mapping request")
    _, op, result, _epoch, iport, eport, life = struct.unpack("!BBHIHHI", r[:16])
    if op != 129 or result != 0:
        sys.exit(f"natpmp: mapping request failed (op {op}, result {result})")
    if args.delete:
        print(f"natpmp: deleted the mapping of UDP port {iport}")
    else:
        print(f"natpmp: external address {ext}; UDP {iport} mapped to {ext}:{eport} for {life} s")
        print(f"MAPPED {ext} {eport}")


def pcp(args):
    gw = (args.gateway, 5351)
    client = ipaddress.ip_address(args.client)
    client16 = (
        ipaddress.IPv6Address("::ffff:" + str(client)).packed
        if client.version == 4
        else client.packed
    )
    lifetime = 0 if args.delete else 120
    nonce = bytes.fromhex(args.nonce) if args.nonce else os.urandom(12)
    any_ext = ipaddress.IPv6Address("::ffff:0.0.0.0").packed
    head = struct.pack("!BBHI", 2, 1, 0, lifetime) + client16
    body = nonce + struct.pack("!B3xHH", 17, args.internal_port, args.internal_port) + any_ext
    r = udp_ask(gw, head + body)
    if r is None or len(r) < 60:
        sys.exit("pcp: no answer to the MAP request")
    ver, op, result, life = struct.unpack("!BBxBI", r[:8])
    if ver != 2 or op != 0x81 or result != 0:
        sys.exit(f"pcp: MAP failed (version {ver}, opcode {op:#x}, result {result})")
    eport = struct.unpack("!H", r[24 + 18 : 24 + 20])[0]
    eip = ipaddress.IPv6Address(r[24 + 20 : 24 + 36])
    eip = eip.ipv4_mapped or eip
    if args.delete:
        print(f"pcp: deleted the mapping of UDP port {args.internal_port}")
    else:
        print(f"pcp: UDP {args.internal_port} mapped to {eip}:{eport} for {life} s (nonce {nonce.hex()})")
        print(f"MAPPED {eip} {eport} {nonce.hex()}")


# ---- small tools -----------------------------------------------------------------------


def recv(args):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", args.port))
    print("ready", flush=True)
    if not select.select([s], [], [], args.timeout)[0]:
        print(f"nothing arrived on UDP port {args.port} within {args.timeout} s")
        sys.exit(1)
    data, src = s.recvfrom(2048)
    ip = src[0].removeprefix("::ffff:")
    print(f"received {len(data)} bytes from {fmt((ip, src[1]))}")


def send(args):
    s = socket.socket(family_of(args.ip), socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(b"natlab", (args.ip, args.port))
        time.sleep(0.1)


def http_ok(args):
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as r:
            ok = r.status == 200
    except OSError:
        ok = False
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stun-server")
    p.add_argument("ips", nargs="+")
    p.add_argument("--ports", nargs=2, type=int, required=True)
    p.set_defaults(fn=stun_server)
    p = sub.add_parser("classify")
    p.add_argument("ips", nargs=2)
    p.add_argument("--ports", nargs=2, type=int, required=True)
    p.add_argument("--expect")
    p.set_defaults(fn=classify)
    p = sub.add_parser("natpmp")
    p.add_argument("gateway")
    p.add_argument("--internal-port", type=int, required=True)
    p.add_argument("--delete", action="store_true")
    p.set_defaults(fn=natpmp)
    p = sub.add_parser("pcp")
    p.add_argument("gateway")
    p.add_argument("--client", required=True)
    p.add_argument("--internal-port", type=int, required=True)
    p.add_argument("--nonce")
    p.add_argument("--delete", action="store_true")
    p.set_defaults(fn=pcp)
    p = sub.add_parser("recv")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=3)
    p.set_defaults(fn=recv)
    p = sub.add_parser("send")
    p.add_argument("ip")
    p.add_argument("port", type=int)
    p.set_defaults(fn=send)
    p = sub.add_parser("http-ok")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=3)
    p.set_defaults(fn=http_ok)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
