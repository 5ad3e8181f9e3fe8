"""``greenrunner serve`` in a subprocess on 127.0.0.1, talked to over real HTTP with any
headers and from any loopback source address (127.0.0.2 is "another client")."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

START_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    text: str

    def cookie(self, name: str) -> str | None:
        for header in self.headers.get_all("set-cookie") or []:
            found = re.match(rf"{re.escape(name)}=([^;]*)", header)
            if found:
                return found.group(1)
        return None


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = f"greenrunner-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, (filename, content) in files.items():
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class LiveServer:
    def __init__(self, root: Path, *extra: str, token: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log = root / f"server-{self.port}.log"
        env = {**os.environ, "GREENRUNNER_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
        env.pop("GREENRUNNER_TOKEN", None)
        if token is not None:
            env["GREENRUNNER_TOKEN"] = token  # not --token: keeps it out of the process list
        command = [sys.executable, "-m", "greenrunner.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(root / "data"), *extra]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                self.request("GET", "/static/app.css")
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()[-3000:]}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        source: str = "127.0.0.1",
    ) -> Reply:
        """One request on a fresh connection from ``source``; redirects are not followed."""
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=60, source_address=(source, 0)
        )
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            answer = conn.getresponse()
            return Reply(answer.status, answer.msg, answer.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
