"""Server and CLI settings: one frozen dataclass, read from arguments and ``BITNET_*`` variables.

Precedence: explicit keyword arguments (CLI flags) > environment > defaults.
Everything the server writes lives under ``data_dir`` unless a URL says
otherwise: the SQLite database, uploaded and quantized models, the JWT secret.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_TIERS", "Settings", "TierLimits", "parse_origins"]


@dataclass(frozen=True)
class TierLimits:
    """What one customer tier may do: requests per hour, monthly quotas, stored bytes."""

    requests_per_hour: int
    quantize_jobs_per_month: int
    inference_tokens_per_month: int
    compute_units_per_month: int
    #: Bytes of model files an account may own (uploads and quantization outputs).
    storage_bytes: int = 10 * 1024**3


DEFAULT_TIERS: dict[str, TierLimits] = {
    "developer": TierLimits(1_000, 50, 1_000_000, 100_000, 10 * 1024**3),
    "team": TierLimits(10_000, 500, 20_000_000, 2_000_000, 100 * 1024**3),
    "enterprise": TierLimits(100_000, 10_000, 500_000_000, 50_000_000, 1024**4),
}


def _default_data_dir() -> Path:
    return Path(os.environ.get("BITNET_DATA_DIR") or Path.cwd() / "data")


@dataclass(frozen=True)
class Settings:
    """Everything an instance of the server, a worker or the CLI needs to know."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=_default_data_dir)
    #: ``sqlite:///path`` (default: ``<data_dir>/bitnet.db``) or ``postgresql://…``.
    database_url: str = ""
    #: HS256 secret; read from ``<data_dir>/jwt_secret`` (created once) when empty.
    jwt_secret: str = ""
    jwt_issuer: str = "bitnet-sdk"
    jwt_audience: str = "bitnet-sdk-api"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    tiers: dict[str, TierLimits] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    open_signup: bool = False
    #: Largest model upload accepted, in bytes.
    max_upload_bytes: int = 20 * 1024**3
    #: Largest multipart upload (Connexion holds it in memory: larger files go by raw PUT).
    max_multipart_bytes: int = 64 * 1024**2
    #: Server processes sharing the port (``bitnet serve --processes``; see
    #: :mod:`bitnet_sdk.server.processes`). 1: the server runs in the calling process.
    processes: int = 1
    #: ``redis://host:port/db``: shared rate limits in Redis instead of the database
    #: (empty: the database alone). See :mod:`bitnet_sdk.service.accounting.limiter`.
    redis_url: str = ""
    #: Where model files live: empty for ``<data_dir>/models``, or ``s3://bucket/prefix``
    #: (credentials from the ``AWS_*`` variables). See
    #: :mod:`bitnet_sdk.service.registry.storage`.
    storage_url: str = ""
    #: Endpoint of an S3-compatible service (empty: ``AWS_ENDPOINT_URL`` or AWS itself).
    s3_endpoint_url: str = ""
    #: Bound of the local cache of model files fetched from object storage, in bytes.
    storage_cache_bytes: int = 32 * 1024**3
    #: In-server job worker threads (0: jobs only run in ``bitnet worker`` processes).
    workers: int = 1
    #: Memory budget of the loaded-model cache, in bytes.
    model_cache_bytes: int = 4 * 1024**3
    #: Concurrent requests waiting per model before 503.
    model_queue_size: int = 16
    #: Generations of one model decoded together in one batched step (its slots).
    max_batch_size: int = 16
    request_timeout_s: float = 300.0
    #: Seconds an inference request's quota reservation outlives ``request_timeout_s``
    #: (its usage is recorded after the answer): a reservation of a killed process stops
    #: counting this long after the request's timeout (see
    #: :mod:`bitnet_sdk.service.accounting.reservations`).
    reservation_grace_s: float = 120.0
    #: Seconds between updates of the usage records of running inference requests (a
    #: record not updated for 5 of them belongs to a dead process and is finalised; see
    #: :mod:`bitnet_sdk.service.accounting.open_usage`).
    usage_checkpoint_s: float = 2.0
    #: Networks of reverse proxies whose ``X-Forwarded-For`` is believed (comma-separated
    #: addresses or CIDRs, e.g. ``10.0.0.0/8,::1``); empty: the TCP peer is the client.
    trusted_proxies: str = ""
    #: Allow webhooks to loopback/private addresses (tests, trusted networks).
    webhook_allow_private: bool = False
    backend: str = "auto"
    #: Demo model created on first start when the store has no models.
    demo_model: bool = True
    #: Web origins allowed to call the API from browsers (``*``: any); none by default.
    #: ``BITNET_CORS_ORIGINS`` takes them comma separated.
    cors_origins: tuple[str, ...] = ()
    #: Open WebSocket connections one user may hold across all server processes sharing the
    #: database (more: close 4429).
    ws_max_connections_per_user: int = 16
    #: Seconds between re-checks of an open WebSocket's credential (revoked: close 4401).
    ws_credential_recheck_s: float = 30.0

    def __post_init__(self) -> None:
        # Accept str paths from callers; everything downstream relies on Path.
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``BITNET_<FIELD>`` variables, then ``overrides`` (non-None)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"BITNET_{f.name.upper()}")
            if raw is None or f.name == "tiers":
                continue
            try:
                values[f.name] = _coerce(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"BITNET_{f.name.upper()}={raw!r}: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'bitnet.db'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def uploads_dir(self) -> Path:
        """Partial uploads: written here, renamed into ``models_dir`` when complete."""
        return self.data_dir / "uploads"

    def secret(self) -> str:
        """The JWT secret, creating ``<data_dir>/jwt_secret`` (mode 600) on first use."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt_secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)  # fails if another process won the race
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()


def parse_origins(raw: str) -> tuple[str, ...]:
    """Origins from a comma-separated list, each checked (``ValueError`` names a bad one)."""
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            continue
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
        except ValueError as exc:
            raise ValueError(f"CORS origin {origin!r} is not a valid URL: {exc}") from exc
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query:
            raise ValueError(f"CORS origin {origin!r} is not '*' or scheme://host[:port]")
    return origins



def _coerce(type_name: object, raw: str) -> object:
    t = str(type_name)
    if t == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    if t == "Path":
        return Path(raw)
    if t == "tuple[str, ...]":  # the only tuple field
        return parse_origins(raw)
    return raw
