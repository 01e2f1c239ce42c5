from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field

from mailcast.api.schemas import Input, Output, SingleLine, Timestamp
from mailcast.scopes import Scope

if TYPE_CHECKING:
    from mailcast.db.models import ApiKey

_ADDRESS_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029\u0085]")


def _postal_address(value: str) -> str:
    """Lines of text: CRLF becomes LF, every line is trimmed, empty lines go."""
    lines = [line.strip() for line in value.replace("\r\n", "\n").split("\n")]
    if any(_ADDRESS_CONTROL.search(line) for line in lines):
        raise ValueError("must be lines of text without control characters")
    return "\n".join(line for line in lines if line)


PostalAddress = Annotated[str, Field(max_length=1000), AfterValidator(_postal_address)]


class ApiKeyCreate(Input):
    name: SingleLine = Field(min_length=1, max_length=200)
    scope: Scope = Scope.FULL_ACCESS


class ApiKeyOut(Output):
    id: str
    name: str
    scope: Scope
    key_prefix: str
    last_used_at: Timestamp | None
    created_at: Timestamp

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            scope=Scope(key.scope),
            key_prefix=key.prefix,
            last_used_at=key.last_used_at,
            created_at=key.created_at,
        )


class ApiKeyCreated(Output):
    id: str
    name: str
    scope: Scope
    key: str
    key_prefix: str
    created_at: Timestamp


class QuotaOut(Output):
    period: str
    limit: int
    used: int
    remaining: int


class AccountOut(Output):
    id: str
    name: str
    plan: str
    postal_address: str | None
    campaign_limit: int | None = Field(
        description="Campaigns that may exist at once; null: unlimited"
    )
    quota: QuotaOut = Field(description="Marketing emails this calendar month (UTC)")
    created_at: Timestamp


class AccountUpdate(Input):
    name: SingleLine | None = Field(default=None, min_length=1, max_length=200)
    postal_address: PostalAddress | None = Field(
        default=None,
        description="Shown in the footer added to a campaign whose body has no unsubscribe link "
        "(lines separated by newlines); null removes it",
    )
