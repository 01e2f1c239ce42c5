from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    READ_ONLY = "read_only"
    SENDING_ACCESS = "sending_access"
    FULL_ACCESS = "full_access"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Scope.READ_ONLY: 0, Scope.SENDING_ACCESS: 1, Scope.FULL_ACCESS: 2}


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account, through one of its keys."""

    account_id: str
    key_id: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return self.scope.rank >= needed.rank
