"""Settings: placeholders the stacks store are not mistaken for real secrets."""

from __future__ import annotations

import pytest
from groundwork_app.adapters.llm import SimulatedProvider, build_provider
from groundwork_app.settings import Settings


@pytest.mark.parametrize(
    "placeholder", ["", " ", "operator-must-set-this", " operator-must-set-this\n"]
)
def test_llm_key_placeholders_select_the_simulated_provider(placeholder: str):
    settings = Settings(llm_api_key=placeholder)
    assert settings.llm_api_key_value == ""
    assert isinstance(build_provider(settings), SimulatedProvider)


def test_a_real_llm_key_selects_the_http_provider():
    settings = Settings(llm_api_key="sk-live-abc")
    assert settings.llm_api_key_value == "sk-live-abc"
    assert not isinstance(build_provider(settings), SimulatedProvider)
