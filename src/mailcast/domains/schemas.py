from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mailcast.api.schemas import Input, Output, Timestamp


class DomainCreate(Input):
    name: str = Field(min_length=1, max_length=253, examples=["mail.example.com"])
    dkim_algorithm: Literal["rsa", "ed25519"] = Field(
        "rsa",
        description="The DKIM key: rsa (RSA-2048, verified everywhere) or ed25519 "
        "(RFC 8463: signs about 20 times faster, but not every receiver verifies it yet)",
    )


class DnsRecordOut(BaseModel):
    record: str
    type: str
    host: str
    name: str
    value: str
    verified: bool


class DomainOut(Output):
    id: str
    name: str
    status: str
    spf_verified: bool
    dkim_verified: bool
    dkim_algorithm: str
    dmarc_verified: bool
    dns_records: list[DnsRecordOut]
    verified_at: Timestamp | None
    last_checked_at: Timestamp | None
    created_at: Timestamp


class DomainVerifyOut(DomainOut):
    problems: list[str] = Field(
        description="Lookups that got no definite answer (timeouts, SERVFAIL)"
    )
