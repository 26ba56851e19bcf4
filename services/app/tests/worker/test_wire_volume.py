"""What one API request and its response weigh on the wire, as the ALB's processed-bytes
LCU dimension counts them: groundwork/plan/prices.yaml (``measured_traffic``) prices the
load balancer's capacity units from this figure, so this test fails when the API's
requests or responses grow past it, or shrink far below it (docs/cost-model.md, "The
load balancer's capacity units").

CloudWatch's ``ProcessedBytes`` for an Application Load Balancer is "the total number of
bytes processed by the load balancer over IPv4 and IPv6 (HTTP header and HTTP payload)",
including "traffic to and from clients"; ALB metrics exclude health-check requests (ELB
User Guide, "CloudWatch metrics for your Application Load Balancer"). So the measure is
every byte of HTTP/1.1 both ways between a client and the real `groundwork-app api`
process, counted by a TCP relay on loopback in front of it. The worker and relay run as
processes against real PostgreSQL, RabbitMQ and Redis so the GET returns a finished job.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from groundwork_app.settings import Settings
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import make_settings, wait_job_status
from .processes import bearer, process_env, start_service

pytestmark = pytest.mark.slow

JOBS = 20
# OpenAI's rule of thumb: a token is about 4 characters of English text
# ("What are tokens and how to count them?", OpenAI Help Center).
CHARS_PER_TOKEN = 4


class CountingRelay:
    """A TCP relay on loopback that forwards to ``port`` and counts bytes both ways."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.to_server = 0
        self.to_client = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    self.to_server += len(data)
                else:
                    self.to_client += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(
            self._pipe(reader, up_writer, True),
            self._pipe(up_reader, writer, False),
            return_exceptions=True,
        )

    @property
    def total(self) -> int:
        return self.to_server + self.to_client

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_the_price_table_covers_what_a_request_weighs_on_the_wire(
    settings: Settings,
    engine: AsyncEngine,
    service_env: dict[str, str],
    tmp_path: Path,
    rabbit_ok: object,
) -> None:
    from groundwork.plan.pricing.loader import load_price_table

    table = load_price_table()
    usage = table.assumptions("production")
    settings = make_settings(queue_name=settings.queue_name)
    service = await start_service(process_env(service_env, settings.queue_name), tmp_path)
    relay = CountingRelay(service.port)
    try:
        proxy_port = await relay.start()
        # The prompt the cost model assumes per job (llm_input_tokens_per_job).
        prompt_chars = int(usage["llm_input_tokens_per_job"]) * CHARS_PER_TOKEN
        # One new connection per request: the bound the LCU pricer assumes (no keep-alive).
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{proxy_port}",
            headers=bearer(settings, "wire-volume"),
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
        )
        job_ids: list[uuid.UUID] = []
        async with client:
            for i in range(JOBS):
                words = f"Ticket {i}: the customer reports that the export fails. "
                prompt = (words * (prompt_chars // len(words) + 1))[:prompt_chars]
                response = await client.post(
                    "/v1/jobs", json={"prompt": prompt, "metadata": {"ticket": f"SUP-{i}"}}
                )
                assert response.status_code == 202, response.text
                job_ids.append(uuid.UUID(response.json()["id"]))
            for job_id in job_ids:
                await wait_job_status(engine, job_id, "succeeded", timeout=60)
            results = []
            for job_id in job_ids:
                response = await client.get(f"/v1/jobs/{job_id}")
                assert response.status_code == 200
                assert response.json()["status"] == "succeeded"
                results.append(len(response.json()["result"].encode()))
        # Let the relay's pipes see both sides close.
        await asyncio.sleep(0.2)
    finally:
        await relay.stop()
        service.stop()
    assert relay.connections == 2 * JOBS, relay.connections
    # The simulated provider answers in a few dozen characters; a real answer is the
    # model's llm_output_tokens_per_job: count the difference as if the GET carried it.
    answer_chars = int(usage["llm_output_tokens_per_job"]) * CHARS_PER_TOKEN
    padding = sum(max(answer_chars - n, 0) for n in results)
    per_request = (relay.total + padding) / (2 * JOBS)
    print(
        f"wire bytes: {relay.to_server} to the api, {relay.to_client} back, "
        f"+{padding} for full-length answers: {per_request:.0f} per request"
    )

    priced = float(table.data["measured_traffic"]["api_bytes_per_request"])
    # The table covers the measurement, and is a rounding of it, not a guess.
    assert priced >= per_request, (per_request, priced)
    assert priced <= 2 * per_request, (per_request, priced)
