"""The bundled price table (``prices.yaml``): loading, validating and looking prices up."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRICES_PATH = Path(__file__).parent.parent / "prices.yaml"


class PriceTableError(ValueError):
    """The price table is missing, malformed or lacks a region or tier."""


@dataclass(frozen=True)
class PriceTable:
    data: dict[str, Any]
    path: Path

    @property
    def currency(self) -> str:
        return str(self.data.get("currency", "USD"))

    @property
    def hours_per_month(self) -> float:
        return float(self.data["hours_per_month"])

    @property
    def seconds_per_month(self) -> float:
        return float(self.data["seconds_per_month"])

    def regions(self, cloud: str) -> list[str]:
        return sorted((self.data.get(cloud) or {}).keys())

    def region(self, cloud: str, region: str) -> dict[str, Any]:
        regions = self.data.get(cloud) or {}
        if region not in regions:
            raise PriceTableError(
                f"no {cloud} prices for region {region!r} in {self.path.name} "
                f"(priced regions: {', '.join(sorted(regions)) or 'none'})"
            )
        return dict(regions[region])

    def assumptions(self, tier: str) -> dict[str, float]:
        tiers = self.data.get("assumptions") or {}
        if tier not in tiers:
            raise PriceTableError(
                f"no usage assumptions for tier {tier!r} in {self.path.name} "
                f"(tiers: {', '.join(sorted(tiers))})"
            )
        return {str(k): float(v) for k, v in tiers[tier].items()}

    def free_reason(self, type_token: str) -> str | None:
        free = self.data.get("free") or {}
        if type_token in free:
            return str(free[type_token])
        for pattern, reason in free.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(type_token, pattern):
                return str(reason)
        return None


def load_price_table(path: Path | None = None) -> PriceTable:
    path = path or PRICES_PATH
    return _load_cached(path.resolve())


@cache
def _load_cached(path: Path) -> PriceTable:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PriceTableError(f"price table not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PriceTableError(f"price table {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise PriceTableError(f"price table {path} lacks 'schema: 1'")
    for key in ("hours_per_month", "seconds_per_month", "assumptions"):
        if key not in data:
            raise PriceTableError(f"price table {path} lacks {key!r}")
    return PriceTable(data=data, path=path)
