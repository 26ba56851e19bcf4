"""AccessLogBucket: where the load balancer delivers its access logs.

Private (public access block, ACLs off), SSE-S3 (ALB log delivery supports SSE-S3 only,
not SSE-KMS), expiring after the retention, writable only by ELB log delivery, over TLS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.args import moved_children


@dataclass
class AccessLogBucketArgs:
    retention_days: int = 90
    """Objects expire after this many days."""
    deletion_protection: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the bucket, and no ``force_destroy``."""

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError(f"retention_days={self.retention_days}: at least 1")


class AccessLogBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    policy: aws.s3.BucketPolicy
    """The load balancer depends on it: ELB checks its write access when logging is enabled."""

    def __init__(
        self, name: str, args: AccessLogBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:AccessLogBucket", name, None, opts)
        moved = moved_children(opts)  # children of the composer before the split
        child = pulumi.ResourceOptions(parent=self, aliases=moved)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name,
            force_destroy=not args.deletion_protection,
            opts=pulumi.ResourceOptions(
                parent=self,
                aliases=moved,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
            ),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-pab",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        # ALB log delivery supports SSE-S3 only (not SSE-KMS).
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": args.retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            opts=child,
        )
        account = aws.get_caller_identity_output(opts=invoke).account_id
        elb_account = aws.elb.get_service_account_output(opts=invoke).arn
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, account, elb_account).apply(
                lambda a: access_log_policy(a[0], a[1], a[2])
            ),
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket.bucket})


def access_log_policy(bucket_arn: str, account_id: str, elb_account_arn: str) -> str:
    """Let ELB log delivery write under ``alb/``; refuse any non-TLS access."""
    objects = f"{bucket_arn}/alb/AWSLogs/{account_id}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # Regions launched before August 2022 deliver as the regional ELB account.
                    "Sid": "ElbAccountDelivers",
                    "Effect": "Allow",
                    "Principal": {"AWS": elb_account_arn},
                    "Action": "s3:PutObject",
                    "Resource": objects,
                },
                {
                    "Sid": "LogDeliveryServiceDelivers",
                    "Effect": "Allow",
                    "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                    "Action": "s3:PutObject",
                    "Resource": objects,
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
    )
