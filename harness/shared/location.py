"""Where a shared store is, as data (pure): the run index's PostgreSQL URL
(`HARNESS_STORE`), the object store's URL it keeps (`harness store init --objects`), the
hive-style key of a run's files, and URLs shown without their secrets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

SECRET_QUERY_KEYS = ("password", "secret", "secret_key", "access_key", "token", "sslpassword")


def redact(url: str) -> str:
    """The URL as it may be printed: a password in it, or a secret in its query, starred."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    query = "&".join(
        f"{key}=***" if key.lower() in SECRET_QUERY_KEYS else f"{key}={value}"
        for key, values in parse_qs(parts.query, keep_blank_values=True).items()
        for value in values
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class ObjectsLocation:
    """`s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION`: any S3-compatible
    store (AWS S3, MinIO, Ceph, SeaweedFS). Credentials are never part of it: the S3
    client reads them from the environment or the AWS credentials file."""

    bucket: str
    prefix: str
    endpoint: str | None = None  # scheme://host:port of a store other than AWS
    region: str = "us-east-1"

    @classmethod
    def parse(cls, url: str) -> ObjectsLocation:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(
                f"{redact(url)!r} is not an object store URL: write "
                "s3://BUCKET/PREFIX?endpoint=http://HOST:PORT (endpoint: for a store other "
                "than AWS S3)"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        secrets = sorted(set(query) & set(SECRET_QUERY_KEYS))
        if secrets:
            raise ValueError(
                f"the object store URL holds {', '.join(secrets)}: credentials never go in "
                "a URL that is stored; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or "
                "~/.aws/credentials) on each controller"
            )
        endpoint = query.get("endpoint")
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint {endpoint!r}: give it as http://HOST:PORT or https://")
        return cls(parts.netloc, parts.path.strip("/"), endpoint, query.get("region", "us-east-1"))

    def url(self) -> str:
        query = "&".join(
            f"{k}={v}" for k, v in (("endpoint", self.endpoint), ("region", self.region)) if v
        )
        return f"s3://{self.bucket}/{self.prefix}" + (f"?{query}" if query else "")

    def root(self) -> str:
        """The store's folder as the S3 filesystem names it: `bucket/prefix`."""
        return "/".join(p for p in (self.bucket, self.prefix) if p)

    def run_key(self, site: str, plan: str, run_id: str) -> str:
        """A run's folder, hive-style, so a dataset over the store filters by partition."""
        parts = (("site", site), ("plan", plan), ("run", run_id))
        return self.root() + "/" + "/".join(f"{k}={quote(v, safe='')}" for k, v in parts)
