"""`groundwork prices refresh` against a stubbed AWS Price List API (botocore Stubber).

The responses follow the documented ``aws_v1`` PriceList shape (a JSON string per
product with ``product.attributes.usagetype`` and ``terms.OnDemand...pricePerUnit``);
they are built here, not recorded from a live account (none is reachable).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.stub import Stubber
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.plan.pricing import PRICES_PATH, estimate, load_price_table
from groundwork.plan.program import PlanError
from groundwork.plan.refresh import PriceQuery, find_price, queries_for, refresh_aws_prices


def product(usagetype: str, usd: str) -> str:
    """One PriceList entry in the aws_v1 format get_products returns."""
    return json.dumps(
        {
            "product": {
                "productFamily": "x",
                "sku": "SKU1",
                "attributes": {"usagetype": usagetype, "regionCode": "us-east-1"},
            },
            "serviceCode": "x",
            "terms": {
                "OnDemand": {
                    "SKU1.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": "SKU1",
                        "priceDimensions": {
                            "SKU1.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "description": "$0.00 free tier",
                                "pricePerUnit": {"USD": "0.0000000000"},
                            },
                            "SKU1.JRTCKXETXF.8EEUB22XNJ": {
                                "unit": "Hrs",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "description": "price",
                                "pricePerUnit": {"USD": usd},
                            },
                        },
                    }
                }
            },
            "version": "20250601",
            "publicationDate": "2025-06-01T00:00:00Z",
        }
    )


def client() -> Any:
    return botocore.session.get_session().create_client(
        "pricing",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def expected_params(query: PriceQuery, token: str | None = None) -> dict[str, Any]:
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"}]
    filters += [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in query.filters.items()]
    params = {
        "ServiceCode": query.service,
        "Filters": filters,
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    return params


def test_find_price_pages_and_matches_the_usage_type_suffix() -> None:
    query = PriceQuery(
        ("nat_gateway", "hourly"), "AmazonEC2", {"productFamily": "NAT Gateway"}, "NatGateway-Hours"
    )
    c = client()
    with Stubber(c) as stub:
        stub.add_response(
            "get_products",
            {
                "FormatVersion": "aws_v1",
                "NextToken": "page2",
                "PriceList": [product("NatGateway-Bytes", "0.0450000000")],
            },
            expected_params(query),
        )
        stub.add_response(
            "get_products",
            {
                "FormatVersion": "aws_v1",
                "PriceList": [product("USE1-NatGateway-Hours", "0.0480000000")],
            },
            expected_params(query, "page2"),
        )
        assert find_price(c, query, "us-east-1") == pytest.approx(0.048)
        stub.assert_no_pending_responses()


def test_refresh_updates_aws_prices_keeps_the_rest_and_reports_missing(tmp_path: Path) -> None:
    table_path = tmp_path / "prices.yaml"
    shutil.copy(PRICES_PATH, table_path)
    original = yaml.safe_load(table_path.read_text())
    queries = queries_for(original["aws"]["us-east-1"])
    nat_hourly = next(q for q in queries if q.path == ("nat_gateway", "hourly"))
    kms_requests = next(q for q in queries if q.path == ("kms", "per_10k_requests"))
    missing_query = next(q for q in queries if q.path == ("waf", "rule_month"))
    c = client()
    stub = Stubber(c)
    for query in queries:
        if query is missing_query:
            page = {"FormatVersion": "aws_v1", "PriceList": [product("Something-Else", "9.99")]}
        elif query is nat_hourly:
            page = {"FormatVersion": "aws_v1", "PriceList": [product("NatGateway-Hours", "0.05")]}
        elif query is kms_requests:
            # The API quotes per request; the table stores per 10k.
            page = {
                "FormatVersion": "aws_v1",
                "PriceList": [product("us-east-1-KMS-Requests", "0.000003")],
            }
        else:
            node = original["aws"]["us-east-1"]
            for part in query.path:
                node = node[part]
            per_unit = float(node) / query.multiplier
            page = {
                "FormatVersion": "aws_v1",
                "PriceList": [
                    product(f"USE1-{query.usagetype_suffix or 'BoxUsage'}", f"{per_unit:.10f}")
                ],
            }
        stub.add_response("get_products", page, expected_params(query))
    with stub:
        result = refresh_aws_prices(
            path=table_path, client_factory=lambda: c, today=dt.date(2026, 11, 1)
        )
        stub.assert_no_pending_responses()

    assert result.updated == {"nat_gateway.hourly": (0.045, 0.05)}
    assert result.missing == ["waf.rule_month"]
    assert len(result.unchanged) == len(queries) - 2
    refreshed = yaml.safe_load(table_path.read_text())
    aws = refreshed["aws"]["us-east-1"]
    assert aws["nat_gateway"]["hourly"] == 0.05
    assert aws["kms"]["per_10k_requests"] == pytest.approx(0.03)
    assert aws["waf"]["rule_month"] == original["aws"]["us-east-1"]["waf"]["rule_month"]
    assert aws["as_of"] == "2026-11-01"
    assert "Price List API" in aws["source"]
    assert refreshed["gcp"] == original["gcp"]
    assert refreshed["free"] == original["free"]
    assert refreshed["assumptions"] == original["assumptions"]
    assert table_path.read_text().startswith("# groundwork plan: bundled price table")
    # The rewritten table still prices a plan, with the new number.
    from groundwork.mockrun import ProgramRun, RecordedResource

    nat = RecordedResource(
        urn="u",
        type="aws:ec2/natGateway:NatGateway",
        name="nat",
        inputs={},
        state={},
        custom=True,
        parent="",
    )
    report = estimate(
        ProgramRun("groundwork", "staging", [nat], {}),
        cloud="aws",
        region="us-east-1",
        tier="staging",
        table=load_price_table(table_path),
    )
    assert report.resources[0].items[0].unit_price == 0.05


def test_api_errors_are_one_line_plan_errors(tmp_path: Path) -> None:
    table_path = tmp_path / "prices.yaml"
    shutil.copy(PRICES_PATH, table_path)
    c = client()
    with Stubber(c) as stub:
        stub.add_client_error(
            "get_products",
            "AccessDeniedException",
            "not authorized to perform: pricing:GetProducts",
        )
        with pytest.raises(PlanError, match=r"AWS Price List API call for .* failed"):
            refresh_aws_prices(path=table_path, client_factory=lambda: c)
    assert table_path.read_text() == PRICES_PATH.read_text()


def test_refresh_without_credentials_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    output = tmp_path / "out.yaml"
    result = CliRunner().invoke(app, ["prices", "refresh", "--output", str(output)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no AWS credentials found")
    assert "the bundled table is unchanged" in result.stderr
    assert not output.exists()


def test_prices_show_lists_regions_with_dates() -> None:
    result = CliRunner().invoke(app, ["prices", "show"])
    assert result.exit_code == 0
    assert "aws us-east-1: as of " in result.stdout
    assert "gcp europe-west1: as of " in result.stdout
