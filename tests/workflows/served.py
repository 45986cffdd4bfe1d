"""An exported Docker server, started outside Docker on free loopback ports for a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from workflows.exporters.common import free_port


class Server:
    def __init__(self, folder: Path, port: int | None = None, **env: str) -> None:
        self.port, self.grpc_port = port or free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "GRPC_PORT": str(self.grpc_port),
            "HOST": "127.0.0.1",
            "PYTHONPATH": str(folder),
            "LOG_LEVEL": "warning",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server"],
            cwd=folder,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        raw: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 30,
    ) -> tuple[int, object]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, (
                    json.loads(text) if "json" in r.headers.get("content-type", "") else text
                )
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
