"""The reference for the tracking scenario: a bare ASGI app that answers every request with the
same 43-byte GIF and no-store headers, served by the same uvicorn settings as mailcast."""

import base64

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
HEADERS = [
    (b"content-type", b"image/gif"),
    (b"cache-control", b"no-store, no-cache, must-revalidate, private"),
    (b"pragma", b"no-cache"),
    (b"content-length", str(len(GIF)).encode()),
]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": GIF})
