"""ASGI middleware in front of Gradio's upload route: the disk limits that Gradio's own route does not know.

Gradio stores every POST to /gradio_api/upload in its upload folder before any handler runs, and keeps it until
`delete_cache` removes it; a client needs no session for it. This middleware answers such a request before a
byte of its body is read when it would pass a limit of lab.limits: one request over FDFTNET_UPLOAD_MB (413), a
client over FDFTNET_CLIENT_MB of uploads and session folders (429, with the per-client limits on), the whole lab
over FDFTNET_LAB_MB (507), or no Content-Length to check (411). Each answer is one line of text.

    demo.launch(app_kwargs={"middleware": [Middleware(UploadGuard)]})   # app.py's launch()
"""
from __future__ import annotations

from types import SimpleNamespace

from . import limits
from . import state as st

__all__ = ["UploadGuard", "refusal"]


def refusal(headers: dict[str, str], client: str) -> tuple[int, str] | None:
    """(HTTP status, one-line message) when an upload with these headers must be refused, else None."""
    length = headers.get("content-length", "")
    if not length.isdigit():
        return 411, "uploads must say their size (Content-Length)"
    n = int(length)
    cap = float(limits.setting("FDFTNET_UPLOAD_MB"))
    if n > cap * 2**20:
        return 413, f"this upload is {n / 2**20:.0f} MB, over this server's limit of {cap:g} MB a request"
    if limits.public():
        mine = limits.UPLOADS.recent(client) + sum(st._bytes_under(d) for d in list(st._CLIENT_DIRS.get(client, ())))
        cap = float(limits.setting("FDFTNET_CLIENT_MB"))
        if mine + n > cap * 2**20:
            return 429, (f"you have {mine / 2**20:.0f} MB of uploads and sessions on this server (limit {cap:g} MB a "
                         f"visitor): wait a few minutes for them to expire")
    total, cap = st.footprint(), float(limits.setting("FDFTNET_LAB_MB"))
    if total + n > cap * 2**20:
        return 507, f"this server's disk budget ({cap:g} MB for every visitor together) is full: try again later"
    return None


class UploadGuard:
    """Pure ASGI (the body streams through untouched); only POSTs to a path ending in /upload are looked at."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = (scope.get("client") or ("local", 0))[0]
        client = limits.client_of(SimpleNamespace(headers=headers, client=SimpleNamespace(host=host)))
        refused = refusal(headers, client)
        if refused is None:
            limits.UPLOADS.add(client, int(headers["content-length"]))
            return await self.app(scope, receive, send)
        status, message = refused
        body = message.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
