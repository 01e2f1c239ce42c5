"""TXT lookups behind a small interface; production and tests both use dnspython on the wire."""

from __future__ import annotations

from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver


class DnsError(Exception):
    """The lookup got no definite answer (timeout, SERVFAIL, refused)."""


class TxtLookup(Protocol):
    async def txt(self, name: str) -> list[str]: ...


def _split_host_port(entry: str) -> tuple[str, int]:
    """ "1.2.3.4", "1.2.3.4:5353", "::1" or "[::1]:5353"."""
    if entry.startswith("["):
        host, _, port = entry[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, 53


class Resolver:
    def __init__(self, nameservers: str = "", timeout: float = 5.0) -> None:
        if nameservers.strip():
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            servers = []
            for entry in filter(None, (e.strip() for e in nameservers.split(","))):
                host, port = _split_host_port(entry)
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            self._resolver.nameservers = servers
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    async def txt(self, name: str) -> list[str]:
        """Each TXT record's strings joined, as a verifier reads them; [] when there is none."""
        try:
            answer = await self._resolver.resolve(name, "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{name}: {exc.__class__.__name__}: {exc}") from exc
        if answer.rrset is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]
