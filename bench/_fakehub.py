"""A fake Hugging Face Hub on loopback that logs every request's Authorization header (issue #31's audit setup).

It serves `/{repo}/resolve/{revision}/{file}` (HEAD and GET) the way huggingface_hub's `hf_hub_download` and
`get_hf_file_metadata` read them (X-Repo-Commit, ETag, Content-Length). A repo may be private (only a request
carrying the owner's token sees it: others get 401) and a file may be declared larger than it is served (the HEAD
says `claimed` bytes; a GET would stream that many zeros), so a client that downloads before it checks is seen.

    with FakeHub({"owner/private": {"files": {...}, "token": "hf_owner"}}) as hub:   # HF_ENDPOINT=hub.url
        ...; hub.log   # [(method, path, authorization header or None), ...]
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeHub", "checkpoint_files"]


def checkpoint_files(folder) -> dict[str, bytes]:
    """{file name: bytes} of a save_pretrained folder (config.json, model.safetensors)."""
    from pathlib import Path
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


class FakeHub:
    """repos: {repo_id: {"files": {name: bytes}, "token": str | None, "claimed": {name: size}}}."""

    def __init__(self, repos: dict):
        self.repos, self.log, self.sent = repos, [], {}  # sent: repo id -> bytes of file bodies sent
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool):
                hub.log.append((self.command, self.path, self.headers.get("Authorization")))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._status(404, "Entry not found")
                repo_id, name = "/".join(parts[:2]), "/".join(parts[4:])
                repo = hub.repos.get(repo_id)
                if repo is None or (repo.get("token") and self.headers.get("Authorization") != f"Bearer {repo['token']}"):
                    return self._status(401, "Repository not found", error="RepoNotFound")  # as the Hub says it
                if name not in repo["files"]:
                    return self._status(404, "Entry not found", error="EntryNotFound")
                data = repo["files"][name]
                size = repo.get("claimed", {}).get(name, len(data))
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", "0" * 40)
                self.end_headers()
                if body:
                    sent = 0
                    while sent < size:  # a claimed size beyond the data streams zeros
                        chunk = data[sent:sent + (1 << 20)] if sent < len(data) else bytes(min(1 << 20, size - sent))
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            break
                        sent += len(chunk)
                        hub.sent[repo_id] = hub.sent.get(repo_id, 0) + len(chunk)

            def _status(self, code: int, message: str, error: str | None = None):
                body = message.encode()
                self.send_response(code)
                if error:
                    self.send_header("X-Error-Code", error)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def authorized(self) -> list[tuple]:
        """The requests that carried an Authorization header."""
        return [r for r in self.log if r[2]]
