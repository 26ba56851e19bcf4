"""The small components ``ContainerService`` composes (issue 19, item 3).

As pulumi-awsx's ``FargateService`` composes a task definition and terraform-aws-ecs
splits cluster, service and container definition: ``ImageRepository`` (ECR and the
image), ``EcsCluster``, ``TaskLogs``, ``TaskRoles`` and ``EcsInfrastructureRole`` (IAM),
``FargateTaskDefinition`` (one per process) and ``FargateService`` (one per long-running
process). ``ServiceAutoscaling`` (components/aws/autoscaling.py) completes the set.
"""
