"""ASGI middleware in front of every route: bearer-token auth and a cap on the request body's size."""

from __future__ import annotations

import json

from .service import error_body


class Guard:
    """ASGI middleware: bearer-token auth (all routes but /health) and a cap on request body size."""

    def __init__(self, app, *, api_key: str | None, max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = dict(scope["headers"])
        if self.api_key and path != "/health":
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {self.api_key}":
                return await _send_json(send, 401, error_body(path, 401, "missing or wrong API key", "auth_error"))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _send_json(send, 413, error_body(path, 413, f"request body over {self.max_body} bytes",
                                                          "invalid_request_error"))
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _send_json(send, 413, error_body(path, 413, f"request body over {self.max_body} bytes",
                                                              "invalid_request_error"))
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
            # curl -d and some editor plugins omit the header; every POST body here is JSON
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"content-type"]
                         + [(b"content-type", b"application/json")])
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, if it comes

        await self.app(scope, replay, send)


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
