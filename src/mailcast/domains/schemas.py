from __future__ import annotations

from pydantic import BaseModel, Field

from mailcast.api.schemas import Input, Output, Timestamp


class DomainCreate(Input):
    name: str = Field(min_length=1, max_length=253, examples=["mail.example.com"])


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
    dmarc_verified: bool
    dns_records: list[DnsRecordOut]
    verified_at: Timestamp | None
    last_checked_at: Timestamp | None
    created_at: Timestamp


class DomainVerifyOut(DomainOut):
    problems: list[str] = Field(description="Lookups that got no definite answer (timeouts, SERVFAIL)")
