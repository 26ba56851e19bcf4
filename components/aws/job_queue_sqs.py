"""SqsJobQueue: the SQS work queue and its dead-letter queue (groundwork:queue = sqs).

Instead of an Amazon MQ broker: no instance to size, patch or pay for by the hour,
multi-AZ by construction (SQS stores every message redundantly across AZs of the
region), billed per request. What the app relies on (services/app, adapters/sqs.py):

- both queues encrypted with a customer-managed KMS key of their own (SSE-KMS). A
  producer needs kms:GenerateDataKey and kms:Decrypt on it, a consumer kms:Decrypt
  (SQS Developer Guide, "Configure KMS permissions for Amazon SQS"): ``consumer_statements``
  grants exactly that, on this key only, and only through SQS (kms:ViaService);
- the work queue's visibility timeout is the worker's SQS_VISIBILITY_TIMEOUT_SECONDS and
  its long-poll wait 20 s; its redrive policy moves a message to the DLQ once it has
  been received ``delivery_limit + 1`` times, as many deliveries as the RabbitMQ quorum
  queue's x-delivery-limit allows ("Using dead-letter queues in Amazon SQS");
- the DLQ keeps messages 14 days (the maximum), longer than the work queue's 4 days:
  a message's retention counts from its original enqueue time, also in the DLQ, so a
  DLQ shorter than its source would expire messages early (same guide);
- the DLQ only accepts dead letters from this work queue (redrive allow policy), and
  both queues refuse requests without TLS (aws:SecureTransport).

Names are auto-generated (logical name + random suffix): a replacement creates the new
queue before deleting the old one, where a fixed name would collide, and SQS refuses a
queue name reused within 60 s of its deletion. Replacing or destroying a queue drops
the messages in it; the outbox has already marked them sent, so jobs still ``queued``
are re-published by re-running them (docs/runbook.md, "Backup and restore"): replace
or switch queues in a drained window.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import renamed_from
from components.aws.kms import EncryptionKey, EncryptionKeyArgs

MAX_VISIBILITY_SECONDS = 43_200  # 12 h, SQS's limit
MAX_RETENTION_SECONDS = 1_209_600  # 14 days
LONG_POLL_SECONDS = 20


@dataclass
class SqsJobQueueArgs:
    delivery_limit: int
    """QUEUE_DELIVERY_LIMIT: the app dead-letters at this attempt; SQS after one more."""
    visibility_timeout_seconds: int = 300
    """SQS_VISIBILITY_TIMEOUT_SECONDS: longer than a job's deadline."""
    retention_seconds: int = 345_600
    """Work queue retention (4 days, SQS's default)."""
    dlq_retention_seconds: int = MAX_RETENTION_SECONDS
    kms_data_key_reuse_seconds: int = 300
    """How long SQS reuses a data key before calling KMS again (60-86,400): fewer KMS
    requests, i.e. cost, against a longer-lived data key."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the key and both queues (queued and
    dead-lettered jobs)."""

    def __post_init__(self) -> None:
        if not 1 <= self.delivery_limit <= 100:
            raise ValueError(f"delivery_limit={self.delivery_limit}: 1 to 100")
        if not 1 <= self.visibility_timeout_seconds <= MAX_VISIBILITY_SECONDS:
            raise ValueError(
                f"visibility_timeout_seconds={self.visibility_timeout_seconds}: SQS allows "
                f"0 to {MAX_VISIBILITY_SECONDS}"
            )
        for name, value in (
            ("retention_seconds", self.retention_seconds),
            ("dlq_retention_seconds", self.dlq_retention_seconds),
        ):
            if not 60 <= value <= MAX_RETENTION_SECONDS:
                raise ValueError(f"{name}={value}: SQS allows 60 to {MAX_RETENTION_SECONDS}")
        if self.dlq_retention_seconds <= self.retention_seconds:
            raise ValueError(
                "dlq_retention_seconds must exceed retention_seconds: a dead letter keeps its "
                "original enqueue time and would expire early"
            )
        if not 60 <= self.kms_data_key_reuse_seconds <= 86_400:
            raise ValueError("kms_data_key_reuse_seconds: SQS allows 60 to 86400")

    @property
    def max_receive_count(self) -> int:
        return self.delivery_limit + 1


def _deny_insecure_transport(queue_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sqs:*",
                    "Resource": queue_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def consumer_statements(
    queue_arn: str, dlq_arn: str, key_arn: str, region: str
) -> list[dict[str, Any]]:
    """What the app's task role needs: send/receive/delete/extend on the two queues (the
    relay sends, the worker receives and parks dead letters, `dlq redrive` moves them
    back), the KMS key through SQS only. Nothing on any other queue."""
    return [
        {
            "Sid": "JobQueues",
            "Effect": "Allow",
            "Action": [
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ],
            "Resource": [queue_arn, dlq_arn],
        },
        {
            "Sid": "JobQueueKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}},
        },
    ]


class SqsJobQueue(pulumi.ComponentResource):
    queue_url: pulumi.Output[str]
    queue_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dlq_url: pulumi.Output[str]
    dlq_arn: pulumi.Output[str]
    dlq_name: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: SqsJobQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:aws:SqsJobQueue",
            name,
            None,
            renamed_from("groundwork:aws:JobQueue", opts),
        )
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(
            f"{name}-kms",
            EncryptionKeyArgs(
                description=f"{name}: SQS job queue and dead-letter queue", protect=args.protect
            ),
            opts=child,
        )
        encryption: dict[str, Any] = {
            "kms_master_key_id": key.key_arn,
            "kms_data_key_reuse_period_seconds": args.kms_data_key_reuse_seconds,
        }
        dlq = aws.sqs.Queue(
            f"{name}-dlq",
            message_retention_seconds=args.dlq_retention_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            **encryption,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        queue = aws.sqs.Queue(
            f"{name}-queue",
            visibility_timeout_seconds=args.visibility_timeout_seconds,
            message_retention_seconds=args.retention_seconds,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            redrive_policy=dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count}
                )
            ),
            **encryption,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-allow",
            queue_url=dlq.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        for suffix, target in (("queue", queue), ("dlq", dlq)):
            aws.sqs.QueuePolicy(
                f"{name}-{suffix}-tls",
                queue_url=target.url,
                policy=target.arn.apply(_deny_insecure_transport),
                opts=child,
            )
        self.queue_url = queue.url
        self.queue_arn = queue.arn
        self.queue_name = queue.name
        self.dlq_url = dlq.url
        self.dlq_arn = dlq.arn
        self.dlq_name = dlq.name
        self.kms_key_arn = key.key_arn
        self.register_outputs(
            {
                "queue_url": self.queue_url,
                "dlq_url": self.dlq_url,
                "queue_name": self.queue_name,
                "dlq_name": self.dlq_name,
            }
        )

    def task_statements(self, region: pulumi.Input[str]) -> list[pulumi.Output[dict[str, Any]]]:
        """The task role's statements for the two queues and their key (ContainerService's
        ``task_policy_statements`` takes one Input per statement)."""
        statements = pulumi.Output.all(
            self.queue_arn, self.dlq_arn, self.kms_key_arn, region
        ).apply(lambda a: consumer_statements(a[0], a[1], a[2], a[3]))
        return [statements.apply(_nth(i)) for i in range(2)]


def _nth(index: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def pick(statements: list[dict[str, Any]]) -> dict[str, Any]:
        return statements[index]

    return pick
