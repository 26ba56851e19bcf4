"""Messaging: the Pub/Sub jobs topic, its dead-letter topic and the push to the worker.

Two components because of a dependency cycle: the worker service needs the topic name
and the push identity (env vars, invoker binding) before it exists, and the push
subscription needs the worker's URL after it exists. ``JobQueue`` comes first,
``PushSubscription`` after the services.

Push wiring that fails silently when wrong (messages pile up or are dead-lettered and
nothing logs why), hence the explicit grants here and the tests that check them:

* the subscription signs each push with an OIDC token for the push service account and
  the configured audience; the worker service accepts that audience (Cloud Run custom
  audience) and the app checks it (``PUBSUB_PUSH_AUDIENCE``);
* the push service account is the only principal with ``run.invoker`` on the worker;
* the Pub/Sub service agent needs ``iam.serviceAccountTokenCreator`` on the push service
  account to mint those tokens, ``pubsub.publisher`` on the dead-letter topic and
  ``pubsub.subscriber`` on the source subscription to forward undeliverable messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.gcp.naming import account_id

_DURATION = re.compile(r"^[0-9]+s$")


def _seconds(name: str, value: str) -> int:
    if not _DURATION.match(value):
        raise ValueError(f"{name}={value!r}: use a duration in seconds such as '600s'")
    return int(value[:-1])


@dataclass
class JobQueueArgs:
    project: str
    topic_retention: str = "604800s"
    """How long the topic keeps messages for replay/seek, acknowledged or not."""
    dead_letter_retention: str = "604800s"
    """How long dead letters wait in the inspection subscription (max 7 days)."""
    labels: dict[str, str] = field(default_factory=dict)
    kms_key_name: pulumi.Input[str] | None = None
    """CMEK for both topics' messages. Unlike the data stores, a topic's key can change
    in place (new messages use the new key)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """With ``kms_key_name``: the Pub/Sub agent's grant on the key (publishing to a topic
    whose key the agent cannot use fails)."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the topics and the dead-letter
    subscription (deleting one drops its retained messages): `pulumi destroy` or a
    replacing config change stops instead of deleting them (docs/plan-diff.md)."""

    def __post_init__(self) -> None:
        if not 600 <= _seconds("topic_retention", self.topic_retention) <= 2678400:
            raise ValueError("topic_retention must be between 600s and 2678400s (31 days)")
        if not 600 <= _seconds("dead_letter_retention", self.dead_letter_retention) <= 604800:
            raise ValueError("dead_letter_retention must be between 600s and 604800s (7 days)")


class JobQueue(pulumi.ComponentResource):
    """Jobs topic, dead-letter topic + inspection subscription, the push identity."""

    topic: gcp.pubsub.Topic
    topic_id: pulumi.Output[str]
    topic_name: pulumi.Output[str]
    dead_letter_topic: gcp.pubsub.Topic
    dead_letter_topic_name: pulumi.Output[str]
    dead_letter_subscription_name: pulumi.Output[str]
    push_service_account: gcp.serviceaccount.Account
    pubsub_agent_member: pulumi.Output[str]

    def _topic(self, topic_name: str, args: JobQueueArgs) -> gcp.pubsub.Topic:
        """The jobs topic and its dead-letter topic keep messages alike and are protected
        alike: a lost topic loses every message published to it."""
        return gcp.pubsub.Topic(
            topic_name,
            name=topic_name,
            message_retention_duration=args.topic_retention,
            kms_key_name=args.kms_key_name,
            labels=args.labels,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.depends_on,
                protect=args.protect,
                retain_on_delete=args.protect,
            ),
        )

    def __init__(
        self, name: str, args: JobQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:JobQueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.topic = self._topic(f"{name}-jobs", args)
        self.dead_letter_topic = self._topic(f"{name}-jobs-dead-letter", args)
        dead_letter_subscription = gcp.pubsub.Subscription(
            f"{name}-jobs-dead-letter-inspect",
            name=f"{name}-jobs-dead-letter-inspect",
            topic=self.dead_letter_topic.id,
            # A pull subscription: operators inspect and replay dead letters by hand
            # (`gcloud pubsub subscriptions pull`); the alert watches its backlog.
            ack_deadline_seconds=60,
            message_retention_duration=args.dead_letter_retention,
            # Subscriptions without activity expire after 31 days by default; this one is
            # idle by design and must outlive quiet months.
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            labels=args.labels,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        self.push_service_account = gcp.serviceaccount.Account(
            f"{name}-push",
            account_id=account_id(name, "push"),
            display_name=f"{name} Pub/Sub push identity",
            description="Signs Pub/Sub pushes to the worker; holds run.invoker on it only",
            opts=child,
        )

        # Google creates the Pub/Sub service agent lazily; on a brand-new project the
        # grants below would fail without it, so ask for it explicitly.
        agent = gcp.projects.ServiceIdentity(
            f"{name}-pubsub-agent",
            project=args.project,
            service="pubsub.googleapis.com",
            opts=child,
        )
        self.pubsub_agent_member = agent.member
        gcp.serviceaccount.IAMMember(
            f"{name}-push-token-creator",
            service_account_id=self.push_service_account.name,
            role="roles/iam.serviceAccountTokenCreator",
            member=self.pubsub_agent_member,
            opts=child,
        )
        gcp.pubsub.TopicIAMMember(
            f"{name}-dead-letter-publisher",
            topic=self.dead_letter_topic.name,
            role="roles/pubsub.publisher",
            member=self.pubsub_agent_member,
            opts=child,
        )

        self.topic_id = self.topic.id
        self.topic_name = self.topic.name
        self.dead_letter_topic_name = self.dead_letter_topic.name
        self.dead_letter_subscription_name = dead_letter_subscription.name
        self.register_outputs(
            {
                "topic_name": self.topic_name,
                "dead_letter_topic_name": self.dead_letter_topic_name,
                "dead_letter_subscription_name": self.dead_letter_subscription_name,
                "push_service_account_email": self.push_service_account.email,
            }
        )


@dataclass
class PushSubscriptionArgs:
    queue: JobQueue
    push_endpoint: pulumi.Input[str]
    """The worker's ``https://.../pubsub/push`` URL."""
    audience: pulumi.Input[str]
    """``aud`` of the OIDC token; must be accepted by the worker (URL or custom audience)
    and equal its ``PUBSUB_PUSH_AUDIENCE``."""
    worker_service_name: pulumi.Input[str]
    worker_location: pulumi.Input[str]
    ack_deadline_seconds: int = 180
    """How long Pub/Sub waits for the worker's response before redelivering: above the
    worker's worst case (LLM timeout x retries), at most 600."""
    minimum_backoff: str = "10s"
    maximum_backoff: str = "600s"
    max_delivery_attempts: int = 5
    message_retention: str = "604800s"
    labels: dict[str, str] = field(default_factory=dict)
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the push subscriptions (deleting one
    drops its backlog): `pulumi destroy` or a replacing config change stops instead of
    deleting them (docs/plan-diff.md)."""

    def __post_init__(self) -> None:
        if not 10 <= self.ack_deadline_seconds <= 600:
            raise ValueError(f"ack_deadline_seconds={self.ack_deadline_seconds}: use 10-600")
        low = _seconds("minimum_backoff", self.minimum_backoff)
        high = _seconds("maximum_backoff", self.maximum_backoff)
        if not 0 <= low <= high <= 600:
            raise ValueError(
                "backoff must satisfy 0s <= minimum_backoff <= maximum_backoff <= 600s"
            )
        if not 5 <= self.max_delivery_attempts <= 100:
            raise ValueError(
                f"max_delivery_attempts={self.max_delivery_attempts}: Pub/Sub allows 5-100"
            )
        _seconds("message_retention", self.message_retention)


DEAD_LETTER_PATH = "/pubsub/dead-letter"
"""The worker's endpoint that ends a dead-lettered message's job."""


class PushSubscription(pulumi.ComponentResource):
    """Authenticated push of the jobs topic to the worker, with backoff and dead-lettering;
    the dead letters are pushed to the worker's ``/pubsub/dead-letter`` as well."""

    subscription: gcp.pubsub.Subscription
    dead_letter_push: gcp.pubsub.Subscription
    subscription_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: PushSubscriptionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:PushSubscription", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        queue = args.queue

        invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-worker-invoker",
            name=args.worker_service_name,
            location=args.worker_location,
            role="roles/run.invoker",
            member=queue.push_service_account.member,
            opts=child,
        )
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-worker-push",
            name=f"{name}-worker-push",
            topic=queue.topic_id,
            ack_deadline_seconds=args.ack_deadline_seconds,
            message_retention_duration=args.message_retention,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=args.push_endpoint,
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=queue.push_service_account.email,
                    audience=args.audience,
                ),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=args.minimum_backoff, maximum_backoff=args.maximum_backoff
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=queue.dead_letter_topic.id,
                max_delivery_attempts=args.max_delivery_attempts,
            ),
            labels=args.labels,
            # Pushing before the invoker binding exists turns the first messages into
            # 403s that burn delivery attempts.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[invoker],
                protect=args.protect,
                retain_on_delete=args.protect,
            ),
        )
        # Every dead letter is also pushed to the worker's /pubsub/dead-letter, which
        # ends its job `failed` (the service's worker/terminal.py): without it a job whose
        # message ran out of attempts while its worker was dying stays `processing` until
        # the relay's reconciler deadline. The pull subscription above keeps its copy for
        # inspection and redrive.
        self.dead_letter_push = gcp.pubsub.Subscription(
            f"{name}-dead-letter-push",
            name=f"{name}-dead-letter-push",
            topic=queue.dead_letter_topic.id,
            # Ending a job can wait for a dying worker's lease to lapse.
            ack_deadline_seconds=args.ack_deadline_seconds,
            message_retention_duration=args.message_retention,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=pulumi.Output.from_input(args.push_endpoint).apply(
                    lambda url: url.rsplit("/pubsub/", 1)[0] + DEAD_LETTER_PATH
                ),
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=queue.push_service_account.email,
                    audience=args.audience,
                ),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=args.minimum_backoff, maximum_backoff=args.maximum_backoff
            ),
            labels=args.labels,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[invoker],
                protect=args.protect,
                retain_on_delete=args.protect,
            ),
        )
        gcp.pubsub.SubscriptionIAMMember(
            f"{name}-dead-letter-subscriber",
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=queue.pubsub_agent_member,
            opts=child,
        )
        self.subscription_name = self.subscription.name
        self.register_outputs({"subscription_name": self.subscription_name})
