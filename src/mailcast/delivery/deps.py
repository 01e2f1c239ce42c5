"""FastAPI dependencies of the sending engine: the click and tracking token codec, and the relay
test messages go through."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from mailcast.delivery.tokens import TokenCodec
from mailcast.delivery.transport import Transport
from mailcast.delivery.transports import build_transport


def get_codec(request: Request) -> TokenCodec:
    return cast(TokenCodec, request.app.state.codec)


def get_transport(request: Request) -> Transport:
    """The relay (or outbox) this process sends test messages through, opened on first use."""
    state = request.app.state
    if state.transport is None:
        state.transport, _ = build_transport(state.settings)
    return cast(Transport, state.transport)


CodecDep = Annotated[TokenCodec, Depends(get_codec)]
TransportDep = Annotated[Transport, Depends(get_transport)]
