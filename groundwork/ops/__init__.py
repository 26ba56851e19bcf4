"""Operations the delivery workflows (and on-call engineers) run against a deployed stack.

Every command reads the stack's exports (``pulumi stack output --json`` or a JSON file),
talks to the cloud with the official SDKs (boto3, google-cloud-run) and fails with one
line naming what is wrong: exit code 2 for a user error (credentials, missing outputs,
bad arguments), 1 for an operation that ran and failed (task exit code, smoke test).
"""
