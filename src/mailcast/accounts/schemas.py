from __future__ import annotations

from pydantic import Field

from mailcast.accounts.scopes import Scope
from mailcast.api.schemas import Input, Output, SingleLine, Timestamp


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
    def of(cls, key) -> "ApiKeyOut":
        return cls(id=key.id, name=key.name, scope=key.scope, key_prefix=key.prefix,
                   last_used_at=key.last_used_at, created_at=key.created_at)


class ApiKeyCreated(Output):
    id: str
    name: str
    scope: Scope
    key: str
    key_prefix: str
    created_at: Timestamp
