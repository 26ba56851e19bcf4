"""DnsCertificate: an ACM certificate for one domain, validated through a Route 53 record."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.args import moved_children


@dataclass
class DnsCertificateArgs:
    domain: str
    hosted_zone_id: str
    """The Route 53 zone of ``domain``: the validation record is written there."""

    def __post_init__(self) -> None:
        if not self.domain or not self.hosted_zone_id:
            raise ValueError("DnsCertificate needs domain and hosted_zone_id")


class DnsCertificate(pulumi.ComponentResource):
    certificate_arn: pulumi.Output[str]
    """Known once ACM has issued it (CertificateValidation waits for that), so a listener
    that uses it is never created with a pending certificate."""

    def __init__(
        self, name: str, args: DnsCertificateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:DnsCertificate", name, None, opts)
        moved = moved_children(opts)  # children of the composer before the split
        child = pulumi.ResourceOptions(parent=self, aliases=moved)
        cert = aws.acm.Certificate(
            name,
            domain_name=args.domain,
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            opts=child,
        )
        option = cert.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-validation",
            zone_id=args.hosted_zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-validated",
            certificate_arn=cert.arn,
            validation_record_fqdns=[record.fqdn],
            opts=child,
        )
        self.certificate_arn = validation.certificate_arn
        self.register_outputs({"certificate_arn": self.certificate_arn})
