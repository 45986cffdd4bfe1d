"""`python -m server`: serve the model with uvicorn (graceful shutdown on SIGTERM/SIGINT)."""

from __future__ import annotations

import uvicorn

from server.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_timeout,
        timeout_keep_alive=settings.keepalive_timeout,
        http="server.protocol:GuardedHttpToolsProtocol",
        loop="asyncio",  # the loop grpc.aio supports (server/grpc_api.py shares it)
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
