"""An in-process gRPC stand-in for the Cloud Run v2 API (Services, Revisions, Jobs,
Executions), so tests drive the real google-cloud-run client library over a real channel.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, timestamp_pb2

PARENT = "projects/demo/locations/europe-west1"
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED


def ready(ok: bool = True, message: str = "") -> list[run_v2.Condition]:
    return [run_v2.Condition(type_="Ready", state=SUCCEEDED if ok else FAILED, message=message)]


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(type(message).pb(message))
    return packed


@dataclass
class FakeRun:
    services: dict[str, run_v2.Service] = field(default_factory=dict)
    revisions: dict[str, run_v2.Revision] = field(default_factory=dict)
    jobs: dict[str, run_v2.Job] = field(default_factory=dict)
    executions: dict[str, run_v2.Execution] = field(default_factory=dict)
    # Number of GetExecution calls before an execution completes, and how it ends.
    execution_polls: int = 2
    execution_fails: bool = False
    updates: list[list[tuple[str, int]]] = field(default_factory=list)
    fail_update_at: int | None = None
    calls: list[str] = field(default_factory=list)

    # --- seeding --------------------------------------------------------------------
    def add_service(self, name: str, revisions: list[tuple[str, bool]], serving: str) -> str:
        full = f"{PARENT}/services/{name}"
        for index, (revision, ok) in enumerate(revisions):
            self.revisions[f"{full}/revisions/{revision}"] = run_v2.Revision(
                name=f"{full}/revisions/{revision}",
                conditions=ready(ok, "" if ok else "container failed to start on port 8000"),
                create_time=timestamp_pb2.Timestamp(seconds=1_700_000_000 + index),
                log_uri=f"https://console.cloud.google.com/logs?rev={revision}",
            )
        self.services[full] = run_v2.Service(
            name=full,
            uri=f"https://{name}.run.app",
            latest_created_revision=f"{full}/revisions/{revisions[-1][0]}",
            latest_ready_revision=f"{full}/revisions/{serving}",
            terminal_condition=run_v2.Condition(type_="Ready", state=SUCCEEDED),
            traffic=[
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                    percent=100,
                )
            ],
            traffic_statuses=[
                run_v2.TrafficTargetStatus(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                    revision=serving,
                    percent=100,
                )
            ],
        )
        return full

    def add_job(self, name: str, image: str) -> str:
        full = f"{PARENT}/jobs/{name}"
        self.jobs[full] = run_v2.Job(
            name=full,
            template=run_v2.ExecutionTemplate(
                template=run_v2.TaskTemplate(containers=[run_v2.Container(image=image)])
            ),
        )
        return full

    # --- handlers -----------------------------------------------------------------
    def _service(self, name: str, context: grpc.ServicerContext) -> run_v2.Service:
        if name not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"service {name} not found")
        return self.services[name]

    def get_service(self, request: run_v2.GetServiceRequest, context: Any) -> run_v2.Service:
        self.calls.append("GetService")
        return self._service(request.name, context)

    def update_service(self, request: run_v2.UpdateServiceRequest, context: Any) -> Any:
        self.calls.append("UpdateService")
        current = self._service(request.service.name, context)
        split = [(t.revision, t.percent) for t in request.service.traffic]
        self.updates.append(split)
        if sum(p for _, p in split) != 100:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "traffic must add up to 100")
        for revision, _ in split:
            if f"{current.name}/revisions/{revision}" not in self.revisions:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown revision {revision}")
        updated = run_v2.Service(current)
        del updated.traffic[:]
        updated.traffic.extend(request.service.traffic)
        del updated.traffic_statuses[:]
        updated.traffic_statuses.extend(
            run_v2.TrafficTargetStatus(type_=t.type_, revision=t.revision, percent=t.percent)
            for t in request.service.traffic
        )
        if self.fail_update_at is not None and len(self.updates) == self.fail_update_at:
            updated.terminal_condition = run_v2.Condition(
                type_="Ready", state=FAILED, message="revision crashed under load"
            )
        else:
            updated.terminal_condition = run_v2.Condition(type_="Ready", state=SUCCEEDED)
        self.services[current.name] = updated
        return operations_pb2.Operation(
            name=f"{PARENT}/operations/u{len(self.updates)}",
            done=True,
            response=_pack(updated),
        )

    def get_revision(self, request: run_v2.GetRevisionRequest, context: Any) -> run_v2.Revision:
        self.calls.append("GetRevision")
        if request.name not in self.revisions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"revision {request.name} not found")
        return self.revisions[request.name]

    def list_revisions(self, request: run_v2.ListRevisionsRequest, context: Any) -> Any:
        self.calls.append("ListRevisions")
        found = [r for n, r in self.revisions.items() if n.startswith(request.parent + "/")]
        return run_v2.ListRevisionsResponse(revisions=found)

    def get_job(self, request: run_v2.GetJobRequest, context: Any) -> run_v2.Job:
        self.calls.append("GetJob")
        if request.name not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.name} not found")
        return self.jobs[request.name]

    def update_job(self, request: run_v2.UpdateJobRequest, context: Any) -> Any:
        self.calls.append("UpdateJob")
        self.jobs[request.job.name] = request.job
        return operations_pb2.Operation(
            name=f"{PARENT}/operations/j", done=True, response=_pack(request.job)
        )

    def run_job(self, request: run_v2.RunJobRequest, context: Any) -> Any:
        self.calls.append("RunJob")
        if request.name not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.name} not found")
        short = request.name.rsplit("/", 1)[-1]
        name = f"{request.name}/executions/{short}-{len(self.executions) + 1}"
        image = self.jobs[request.name].template.template.containers[0].image
        self.executions[name] = run_v2.Execution(
            name=name,
            log_uri=f"https://console.cloud.google.com/logs?exec={name}",
            labels={"image": image},
        )
        return operations_pb2.Operation(
            name=f"{PARENT}/operations/r", done=False, metadata=_pack(self.executions[name])
        )

    def get_execution(self, request: run_v2.GetExecutionRequest, context: Any) -> Any:
        self.calls.append("GetExecution")
        execution = self.executions[request.name]
        polls = int(execution.labels.get("polls", "0")) + 1
        execution.labels["polls"] = str(polls)
        if polls >= self.execution_polls:
            execution.completion_time = timestamp_pb2.Timestamp(seconds=1_700_000_100)
            if self.execution_fails:
                execution.failed_count = 1
                execution.conditions = [
                    run_v2.Condition(
                        type_="Completed",
                        state=FAILED,
                        message="Task migrate-1 failed with exit code 1",
                    )
                ]
            else:
                execution.succeeded_count = 1
        return execution


def _unary(fn: Callable[..., Any], request_type: Any) -> grpc.RpcMethodHandler:
    def serialize(message: Any) -> bytes:
        if isinstance(message, operations_pb2.Operation):
            return message.SerializeToString()
        return type(message).serialize(message)

    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.deserialize, response_serializer=serialize
    )


def serve(fake: FakeRun) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Services",
                {
                    "GetService": _unary(fake.get_service, run_v2.GetServiceRequest),
                    "UpdateService": _unary(fake.update_service, run_v2.UpdateServiceRequest),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Revisions",
                {
                    "GetRevision": _unary(fake.get_revision, run_v2.GetRevisionRequest),
                    "ListRevisions": _unary(fake.list_revisions, run_v2.ListRevisionsRequest),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Jobs",
                {
                    "GetJob": _unary(fake.get_job, run_v2.GetJobRequest),
                    "UpdateJob": _unary(fake.update_job, run_v2.UpdateJobRequest),
                    "RunJob": _unary(fake.run_job, run_v2.RunJobRequest),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Executions",
                {"GetExecution": _unary(fake.get_execution, run_v2.GetExecutionRequest)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def clients(address: str) -> dict[str, Any]:
    """The real client classes over an insecure channel to the stand-in."""
    from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcTransport
    from google.cloud.run_v2.services.jobs.transports import JobsGrpcTransport
    from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
    from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

    channel = grpc.insecure_channel(address)
    return {
        "channel": channel,
        "services": run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
        "revisions": run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
        "jobs": run_v2.JobsClient(transport=JobsGrpcTransport(channel=channel)),
        "executions": run_v2.ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel)),
    }
