"""The shared store's URLs as data: what may be printed, what an object store URL says,
where a run's files go."""

from __future__ import annotations

import pytest

from harness.shared.location import ObjectsLocation, redact


def test_a_url_is_printed_without_its_secrets() -> None:
    url = "postgresql://lab:hunter2@db.lab:5432/harness?sslmode=require&password=x2"
    shown = redact(url)
    assert "hunter2" not in shown and "x2" not in shown
    assert shown == "postgresql://lab:***@db.lab:5432/harness?sslmode=require&password=***"
    assert redact("postgresql://lab@db/h") == "postgresql://lab@db/h"


def test_an_object_store_url_names_bucket_prefix_and_endpoint_never_credentials() -> None:
    location = ObjectsLocation.parse("s3://runs/lab/a?endpoint=http://127.0.0.1:8333")
    assert (location.bucket, location.prefix, location.endpoint) == (
        "runs",
        "lab/a",
        "http://127.0.0.1:8333",
    )
    assert ObjectsLocation.parse(location.url()) == location
    assert location.run_key("site 1", "nightly", "r1") == (
        "runs/lab/a/site=site%201/plan=nightly/run=r1"
    )
    with pytest.raises(ValueError, match="credentials never go in"):
        ObjectsLocation.parse("s3://runs/x?secret_key=abc")
    with pytest.raises(ValueError, match="not an object store URL"):
        ObjectsLocation.parse("https://runs/x")
