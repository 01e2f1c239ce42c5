"""A small authoritative DNS server on loopback (dnslib), for verifying sender domains for real."""

from __future__ import annotations

import socket
import time

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZoneResolver(BaseResolver):
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.servfail: set[str] = set()
        self.delay: dict[str, float] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name in self.delay:
            time.sleep(self.delay[name])
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if request.q.qtype == QTYPE.TXT and name in self.txt:
            for value in self.txt[name]:
                # Long values are split into 255-byte strings, as real zones publish DKIM keys.
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        elif not any(k == name or k.endswith("." + name) for k in self.txt):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class LoopbackDns:
    def __init__(self) -> None:
        self.zone = ZoneResolver()
        self.port = _free_udp_port()
        self.server = DNSServer(self.zone, address="127.0.0.1", port=self.port, logger=_Quiet())

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start_thread()

    def stop(self) -> None:
        self.server.stop()

    def publish(self, name: str, *values: str) -> None:
        self.zone.txt.setdefault(name.lower(), []).extend(values)

    def clear(self) -> None:
        self.zone.txt.clear()
        self.zone.servfail.clear()
        self.zone.delay.clear()


class _Quiet:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None
