"""A fake OpenAI-compatible LLM server for the pipeline bench: it waits the simulated
latency, answers ``POST /v1/chat/completions`` with a chat completion and **counts
every call, per prompt**.

Both systems call it over HTTP the way they would call a real provider (the groundwork
worker through its ``OpenAICompatibleProvider`` on aiohttp, the Celery task
through a synchronous httpx.Client), so each pays for a real client call and the count
is taken where the call lands, not reported by the caller. Every bench job has a
unique prompt, so "every LLM call counted once" is ``calls == distinct == jobs``.

The server is a bare asyncio protocol on uvloop (HTTP/1.1 keep-alive, no framework):
at a few thousand calls in flight it must not be what bounds the measurement. Its own
CPU per call is printed by the bench next to the consumers'.

    python -m bench.fake_llm --port 8099 --latency-ms 2000
    curl http://127.0.0.1:8099/stats   # {"calls": N, "distinct": M, "in_flight": K}
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any

_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "


class _State:
    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.prompts: Counter[str] = Counter()
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0


def _completion(prompt: str, model: str) -> bytes:
    # The same shape as OpenAI's chat completion (the fields the clients read).
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"answer to: {prompt[:64]}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 500, "completion_tokens": 200, "total_tokens": 700},
        },
        separators=(",", ":"),
    ).encode()


class _Protocol(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transport is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._handle(head.split(" ", 2), body)

    def _handle(self, request_line: list[str], body: bytes) -> None:
        method, path = request_line[0], request_line[1] if len(request_line) > 1 else "/"
        if method == "GET" and path == "/stats":
            s = self.state
            stats = {
                "calls": s.calls,
                "distinct": len(s.prompts),
                "duplicates": sum(n - 1 for n in s.prompts.values() if n > 1),
                "in_flight": s.in_flight,
                "peak_in_flight": s.peak_in_flight,
            }
            self._send(json.dumps(stats).encode())
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self._send(b'{"error":"not found"}', status=b"404 Not Found")
            return
        request = json.loads(body)
        prompt = request["messages"][-1]["content"]
        s = self.state
        s.calls += 1
        s.prompts[prompt] += 1
        s.in_flight += 1
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
        answer = _completion(prompt, request.get("model", ""))
        asyncio.get_running_loop().call_later(s.latency_s, self._answer, answer)

    def _answer(self, answer: bytes) -> None:
        self.state.in_flight -= 1
        self._send(answer)

    def _send(self, body: bytes, status: bytes = b"200 OK") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (
            _OK_HEAD
            if status == b"200 OK"
            else (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: ")
        )
        self.transport.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)


async def serve(port: int, latency_ms: int) -> None:
    state = _State(latency_ms / 1000)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(state), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.port, args.latency_ms))
    except ImportError:  # pragma: no cover - uvloop is a dependency of the service
        asyncio.run(serve(args.port, args.latency_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
