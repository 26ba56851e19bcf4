"""Dead-letter queue tooling for SQS: list parked messages, redrive them.

``list`` receives messages (hidden for LIST_VISIBILITY_SECONDS) and makes each visible
again at the end with visibility 0, so listing consumes nothing. It long-polls for a
second per call: a short poll samples only some SQS servers and can answer empty
while messages exist (SQS Developer Guide, "Amazon SQS short and long polling").

``redrive`` sends each message to the work queue with the redrive counter + 1 and the
last reason, then deletes it from the DLQ: a crash in between duplicates a message,
never loses one, and the worker's ledger makes the duplicate harmless. The new message
starts with a receive count of 1, so it gets a full set of attempts. (SQS's own
StartMessageMoveTask would move messages back unchanged, without our counters.)

Messages that SQS moved itself (the redrive policy's maxReceiveCount: a worker died on
every delivery, or the worker's own dead-letter send failed) carry no reason attribute.
"""

from __future__ import annotations

import json
from typing import Any

from groundwork_app.adapters.sqs import (
    MAX_BATCH_ENTRIES,
    MESSAGE_ID_ATTRIBUTE,
    SqsCalls,
    decode_attributes,
    encode_attributes,
    sqs_client,
)
from groundwork_app.ports import ATTEMPT_HEADER, JOB_ID_HEADER, REASON_HEADER
from groundwork_app.settings import Settings
from groundwork_app.worker.dlq import LAST_REASON_HEADER, REDRIVE_COUNT_HEADER, DeadLetter

LIST_VISIBILITY_SECONDS = 60
POLL_SECONDS = 1
MOVED_BY_SQS = "broker: maxReceiveCount exceeded (redrive policy)"


def describe(message: dict[str, Any], settings: Settings) -> DeadLetter:
    headers = decode_attributes(message)
    job_id = headers.get(JOB_ID_HEADER, "")
    if not job_id:
        try:
            job_id = str(json.loads(message.get("Body", "")).get("job_id", ""))
        except (ValueError, AttributeError):
            job_id = ""
    reason = headers.get(REASON_HEADER, "")
    attempts_text = headers.get(ATTEMPT_HEADER, "")
    if reason:
        attempts = int(attempts_text) if attempts_text.isdigit() else 1
    else:
        # Moved by the redrive policy: it was received maxReceiveCount times.
        reason = MOVED_BY_SQS
        attempts = settings.queue_delivery_limit + 1
    redrives = headers.get(REDRIVE_COUNT_HEADER, "0")
    return DeadLetter(
        message_id=headers.get(MESSAGE_ID_ATTRIBUTE, "") or str(message.get("MessageId", "")),
        job_id=job_id,
        reason=reason,
        attempts=attempts,
        redrives=int(redrives) if redrives.isdigit() else 0,
    )


async def _receive(calls: SqsCalls, queue_url: str, most: int) -> list[dict[str, Any]]:
    response = await calls(
        calls.client.receive_message,
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(MAX_BATCH_ENTRIES, most)),
        WaitTimeSeconds=POLL_SECONDS,
        VisibilityTimeout=LIST_VISIBILITY_SECONDS,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    return list(response.get("Messages") or [])


async def list_dead_letters(settings: Settings, limit: int = 100) -> list[DeadLetter]:
    calls = SqsCalls(sqs_client(settings), threads=2)
    held: list[dict[str, Any]] = []
    try:
        while len(held) < limit:
            batch = await _receive(calls, settings.sqs_dlq_url, limit - len(held))
            if not batch:
                break
            held.extend(batch)
        return [describe(message, settings) for message in held[:limit]]
    finally:
        for start in range(0, len(held), MAX_BATCH_ENTRIES):
            chunk = held[start : start + MAX_BATCH_ENTRIES]
            await calls(
                calls.client.change_message_visibility_batch,
                QueueUrl=settings.sqs_dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": msg["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, msg in enumerate(chunk)
                ],
            )
        calls.close()


async def redrive(settings: Settings, limit: int | None = None) -> list[DeadLetter]:
    """Move up to ``limit`` (all when None) messages back to the work queue."""
    calls = SqsCalls(sqs_client(settings), threads=2)
    moved: list[DeadLetter] = []
    try:
        while limit is None or len(moved) < limit:
            wanted = MAX_BATCH_ENTRIES if limit is None else limit - len(moved)
            batch = await _receive(calls, settings.sqs_dlq_url, wanted)
            if not batch:
                break
            for message in batch:
                info = describe(message, settings)
                headers = {
                    k: v
                    for k, v in decode_attributes(message).items()
                    if k not in (REASON_HEADER, ATTEMPT_HEADER, MESSAGE_ID_ATTRIBUTE)
                }
                headers[REDRIVE_COUNT_HEADER] = str(info.redrives + 1)
                headers[LAST_REASON_HEADER] = info.reason[:500]
                await calls(
                    calls.client.send_message,
                    QueueUrl=settings.sqs_queue_url,
                    MessageBody=str(message.get("Body", "")),
                    MessageAttributes=encode_attributes(headers, info.message_id),
                )
                await calls(
                    calls.client.delete_message,
                    QueueUrl=settings.sqs_dlq_url,
                    ReceiptHandle=message["ReceiptHandle"],
                )
                moved.append(info)
        return moved
    finally:
        calls.close()
