"""The baseline: a bare FastAPI hello-world on the same uvicorn settings as `groundwork-app api`.

Run as ``python -m bench.hello`` with $PORT. The uvicorn knobs mirror
``groundwork_app.cli.api`` (auto loop -> uvloop, auto HTTP -> httptools, no access
log, same keep-alive) so the only difference the bench sees is the application.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

app = FastAPI(title="hello")


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "hello world"}


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
        date_header=True,
        access_log=False,
        log_config=None,
        timeout_keep_alive=75,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
