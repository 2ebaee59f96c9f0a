"""The real S3-compatible server the tests use: ``BITNET_TEST_S3_URL`` (scripts/start-s3.sh).

The URL is ``http://ACCESS_KEY:SECRET@host:port`` (s3proxy on loopback). Each test gets
a bucket of its own, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

S3_ENV = "BITNET_TEST_S3_URL"


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test server and what a server needs to reach it."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def storage_url(self, prefix: str = "models-store") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables a server process reads its credentials from."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self) -> Any:
        """A plain boto3 client, to look at the bucket from outside the server."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required",
                                          s3={"addressing_style": "path"}))

    def keys(self) -> list[str]:
        """Object keys (without the folder markers s3proxy's file-system back end lists)."""
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", [])
                      if not item["Key"].endswith("/"))


def s3_test_bucket(monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A new bucket, with the credentials exported for this test; skips when no server is set."""
    url = os.environ.get(S3_ENV)
    if not url:
        pytest.skip(f"{S3_ENV} not set (start one with scripts/start-s3.sh)")
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    bucket = S3Bucket(endpoint, f"bitnet-test-{uuid.uuid4().hex[:20]}",
                        parts.username or "", parts.password or "")
    bucket.client().create_bucket(Bucket=bucket.bucket)
    for name, value in bucket.env().items():
        monkeypatch.setenv(name, value)
    return bucket
