"""The example env files document every setting and exactly the deployment contract."""

from __future__ import annotations

import re
from pathlib import Path

from groundwork_app.contract import deployment_contract
from groundwork_app.settings import QueueBackend, Settings

APP_DIR = Path(__file__).resolve().parents[2]
REPO = APP_DIR.parents[1]
_NAME = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.MULTILINE)


def _names(path: Path) -> set[str]:
    return set(_NAME.findall(path.read_text()))


def test_env_example_lists_every_setting():
    assert _names(APP_DIR / ".env.example") == {name.upper() for name in Settings.model_fields}


def test_env_production_example_is_the_contract():
    names = _names(REPO / ".env.production.example")
    contract = (
        deployment_contract(QueueBackend.RABBITMQ).all_names
        | deployment_contract(QueueBackend.PUBSUB).all_names
        | deployment_contract(QueueBackend.SQS).all_names
    )
    assert names == contract
