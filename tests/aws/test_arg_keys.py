"""Item 2 of issue 19: each cloud rule has one owner (the component's Args), each bad
config value gives one ConfigError naming its key, and imageUri is parsed once."""

from __future__ import annotations

from typing import Any

import pytest

from components.args import ArgError
from components.aws.container_service import ProcessSize
from components.aws.network import NetworkArgs
from components.image_ref import ImageReference
from stacks.arg_keys import CONFIG_KEYS, config_keys
from stacks.aws import build_config_args
from stacks.config import ConfigError, build_settings


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"vpcCidr": "10.40.0.0/20"}, "vpcCidr", "/27"),
        ({"apiCpu": "768"}, "apiCpu", "Fargate allows one of"),
        ({"apiMemoryMb": "4096"}, "apiMemoryMb", "512, 1024 or 2048"),
        ({"workerCpu": "300"}, "workerCpu", "Fargate allows one of"),
        ({"workerMemoryMb": "768"}, "workerMemoryMb", "512, 1024 or 2048"),
        ({"apiCpu": "1024", "apiMemoryMb": "3000"}, "apiMemoryMb", "steps of 1024"),
        # ProcessSize owns the worker floor too (MIN_RUNNING); the stack no longer repeats it.
        ({"workerMinCount": "0"}, "workerMinCount", "at least 1 on AWS"),
    ],
)
def test_a_bad_value_is_one_config_error_naming_its_key(
    config: dict[str, str], key: str, fragment: str
) -> None:
    settings = build_settings("staging", config)
    with pytest.raises(ConfigError) as caught:
        build_config_args(settings)
    message = str(caught.value)
    assert message.startswith(f"groundwork:{key} = "), message
    assert fragment in message
    # One key named, not the component's field name.
    assert "memory_mb" not in message and "cidr_block" not in message


def test_every_arg_error_of_a_mapped_args_type_has_a_config_key() -> None:
    raised: list[tuple[type, str]] = []
    for args_type, build in (
        (NetworkArgs, lambda: NetworkArgs(cidr_block="10.40.0.0/20")),
        (NetworkArgs, lambda: NetworkArgs(availability_zones=4)),
        (ProcessSize, lambda: ProcessSize(768, 2048).validate("api")),
        (ProcessSize, lambda: ProcessSize(256, 4096).validate("worker")),
        (ProcessSize, lambda: ProcessSize(256, 512, 0, 2).validate("worker")),
    ):
        with pytest.raises(ArgError) as caught:
            build()
        raised.append((args_type, caught.value.field))
        key = CONFIG_KEYS[raised[-1]]
        with pytest.raises(ConfigError, match=f"groundwork:{key} = "), config_keys(args_type):
            build()
    assert set(raised) <= set(CONFIG_KEYS)


def test_the_worker_floor_has_one_owner() -> None:
    # The api may scale to zero where its config allows it; a worker may not, whoever
    # builds the ProcessSize (the stack's config args or ContainerServiceArgs).
    ProcessSize(256, 512, 0, 2).validate("api")
    with pytest.raises(ArgError) as caught:
        ProcessSize(256, 512, 0, 2).validate("worker")
    assert (caught.value.field, caught.value.value) == ("worker.min_count", 0)


def test_an_unmapped_field_stays_a_programming_error() -> None:
    with pytest.raises(ArgError), config_keys(ProcessSize):
        ProcessSize(768, 2048).validate("relay")


def test_image_uri_is_parsed_once_for_a_whole_stack(
    monkeypatch: pytest.MonkeyPatch, helpers: Any
) -> None:
    from tests.aws.test_image_and_rollout import ecr_uri

    calls: list[str] = []
    parse = ImageReference.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ImageReference], uri: str) -> ImageReference:
        calls.append(uri)
        return parse(cls, uri)  # type: ignore[no-any-return]

    monkeypatch.setattr(ImageReference, "parse", classmethod(counting))
    run = helpers.run_stack("staging", imageUri=ecr_uri("staging"))
    assert calls == [ecr_uri("staging")]
    assert run.outputs["deployed_image"] == ecr_uri("staging")
