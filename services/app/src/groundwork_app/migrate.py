"""`groundwork-app migrate`: apply Alembic migrations up to head, then exit.

The application role it grants afterwards is ``db/roles.py``'s."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("groundwork_app") / "migrations"))
    return config


def upgrade(revision: str = "head") -> None:
    command.upgrade(alembic_config(), revision)


def downgrade(revision: str) -> None:
    command.downgrade(alembic_config(), revision)
