"""An example application for the compose stack's "sidecar" profile.

It talks to agent-memory-proxy on 127.0.0.1:8090, as an application does when the proxy runs
beside it in the same network namespace (a pod's sidecar). Standard library only.

    GET /         writes one turn to a session through the proxy and reads it back
    GET /healthz  answers 200
"""

import json
import os
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MEMORY_URL = os.environ.get("MEMORY_URL", "http://127.0.0.1:8090")
PORT = int(os.environ.get("PORT", "8080"))


def call(method: str, path: str, body: object = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(MEMORY_URL + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            return self.reply(200, {"status": "ok"})
        if self.path != "/":
            return self.reply(404, {"detail": "Not Found"})
        session = f"example-{uuid.uuid4().hex[:12]}"
        turn = {"role": "user", "content": "Hello from the example app"}
        try:
            call("PUT", f"/v1/working-memory/{session}", {"messages": [turn]})
            stored = call("GET", f"/v1/working-memory/{session}")
        except OSError as exc:
            return self.reply(502, {"detail": f"memory service: {exc}"})
        self.reply(200, {"session_id": session, "messages": len(stored["messages"]),
                         "memory_url": MEMORY_URL})

    def reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request is noise here


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
