"""Per-client-IP token buckets for the endpoints anyone can reach without an API key: carrier and
provider webhooks, the customer self-service page, the codec server and agent sign-in.

In memory, per API process: a flood is cut off before the request body is read or the database
touched, and a refused request costs a dictionary lookup (it is not written to the refusal log,
which would turn a flood into database writes). Several API replicas each keep their own
buckets; put a shared limiter in the load balancer for a global limit.

Limits are `burst/refill_per_second` per group, configurable without code:

    NDRFLOW_RATE_LIMITS='{"webhook": "600/100", "page": "30/0.5"}'   # merged over the defaults
    NDRFLOW_RATE_LIMIT_ENABLED=false                                  # benchmarks, chaos runs
    NDRFLOW_RATE_LIMIT_TRUSTED_PROXIES='["10.0.0.0/8"]'               # read X-Forwarded-For from these

Attach: `api.ratelimit.install(app)` in `create_app` (middleware with the path rules below), or
per route `dependencies=[Depends(rate_limit("signin"))]` for a route the rules do not cover.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("ndrflow.api.ratelimit")


@dataclass(frozen=True)
class Limit:
    burst: float  # bucket size: requests allowed at once
    per_second: float  # refill rate: sustained requests per second

    @classmethod
    def parse(cls, text: str) -> Limit:
        try:
            burst, rate = (float(p) for p in text.split("/"))
        except ValueError:
            raise ValueError(f"rate limit {text!r} must look like burst/per_second, e.g. 30/0.5") from None
        if burst < 1 or rate <= 0:
            raise ValueError(f"rate limit {text!r}: burst must be >= 1 and the rate > 0")
        return cls(burst, rate)


# Webhooks come from a few carrier/provider IPs in bursts (a carrier replays its backlog after an
# outage): generous. A customer's page and the sign-in form are people: tight. The Temporal UI
# decodes every event of a history it shows: bursty but bounded.
DEFAULT_LIMITS: dict[str, Limit] = {
    "webhook": Limit(300, 50),
    "page": Limit(30, 0.5),
    "signin": Limit(10, 10 / 60),
    "codec": Limit(200, 50),
}

# (methods or None for all, path pattern, group). Paths are the public contract of issues 2-6.
DEFAULT_RULES: tuple[tuple[frozenset[str] | None, re.Pattern[str], str], ...] = (
    (frozenset({"POST"}), re.compile(r"^/v1/carriers/[^/]+/events/?$"), "webhook"),
    (None, re.compile(r"^/v1/webhooks/"), "webhook"),
    (None, re.compile(r"^/r/"), "page"),
    (None, re.compile(r"^/codec/"), "codec"),
    (frozenset({"POST"}), re.compile(r"^/agent/(sign-?in|login)/?$"), "signin"),
)


class RateLimitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    rate_limit_enabled: bool = True
    # group -> "burst/per_second", merged over DEFAULT_LIMITS.
    rate_limits: dict[str, str] = Field(default_factory=dict)
    # Proxies (IPs or CIDRs) whose X-Forwarded-For is believed; everyone else is the client.
    rate_limit_trusted_proxies: list[str] = Field(default_factory=list)
    # Distinct clients remembered per group; the least recently seen are forgotten first.
    rate_limit_max_clients: int = 50_000

    def limits(self) -> dict[str, Limit]:
        out = dict(DEFAULT_LIMITS)
        out.update({group: Limit.parse(spec) for group, spec in self.rate_limits.items()})
        return out


class TokenBuckets:
    """One bucket per key: `take(key)` spends a token or says how long until one is back."""

    def __init__(
        self, limit: Limit, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()  # sync dependencies run on the thread pool

    def take(self, key: str) -> float | None:
        """None when allowed; otherwise seconds until the next request would be allowed."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.limit.burst, now))
            tokens = min(self.limit.burst, tokens + (now - at) * self.limit.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)  # least recently seen: refilled by now, most likely
        return None if allowed else (1.0 - tokens) / self.limit.per_second


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings | None = None,
        rules: Sequence[tuple[frozenset[str] | None, re.Pattern[str], str]] = DEFAULT_RULES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or RateLimitSettings()
        self.enabled = self.settings.rate_limit_enabled
        self.rules = tuple(rules)
        self.buckets = {
            group: TokenBuckets(limit, clock=clock, max_keys=self.settings.rate_limit_max_clients)
            for group, limit in self.settings.limits().items()
        }
        self._proxies = [
            ipaddress.ip_network(p, strict=False) for p in self.settings.rate_limit_trusted_proxies
        ]
        self._warned: set[tuple[str, str]] = set()

    def group_for(self, method: str, path: str) -> str | None:
        for methods, pattern, group in self.rules:
            if (methods is None or method in methods) and pattern.match(path):
                return group
        return None

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The peer address, or for a trusted proxy the nearest untrusted X-Forwarded-For hop."""
        if not self._proxies or not self._trusted(peer) or not forwarded_for:
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._proxies)

    def check(self, group: str, client: str) -> float | None:
        """None when allowed, else the Retry-After in seconds."""
        if not self.enabled:
            return None
        buckets = self.buckets.get(group)
        if buckets is None:
            raise KeyError(f"no rate limit configured for group {group!r}")
        retry = buckets.take(client)
        if retry is not None and (group, client) not in self._warned:
            # Once per client and group per process: a flood must not become a flood of log lines.
            if len(self._warned) < 10_000:
                self._warned.add((group, client))
            log.warning("rate limit %r exceeded by %s; refusing with 429", group, client)
        return retry


def _refusal(group: str, retry_after: float) -> tuple[dict[str, str], dict[str, str]]:
    seconds = max(1, math.ceil(retry_after))
    body = {"detail": f"too many requests to {group} endpoints from this address; retry after {seconds} s"}
    return body, {"Retry-After": str(seconds)}


class RateLimitMiddleware:
    """Pure ASGI: refuses before the app reads the body or opens a database session."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.limiter.enabled:
            group = self.limiter.group_for(scope["method"], scope["path"])
            if group is not None:
                peer = scope["client"][0] if scope.get("client") else "unknown"
                forwarded = _header(scope, b"x-forwarded-for")
                retry = self.limiter.check(group, self.limiter.client_ip(peer, forwarded))
                if retry is not None:
                    body, headers = _refusal(group, retry)
                    await JSONResponse(body, status_code=429, headers=headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


def install(
    app: FastAPI, settings: RateLimitSettings | None = None, *, clock: Callable[[], float] = time.monotonic
) -> RateLimiter:
    """Add the middleware (call after other middlewares so it runs first) and keep the limiter
    on `app.state.rate_limiter` for the `rate_limit()` dependency."""
    limiter = RateLimiter(settings, clock=clock)
    app.state.rate_limiter = limiter
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return limiter


def rate_limit(group: str) -> Callable[[Request], None]:
    """A route dependency for routes outside DEFAULT_RULES: `dependencies=[Depends(rate_limit("signin"))]`."""

    def dependency(request: Request) -> None:
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is None:
            return
        peer = request.client.host if request.client else "unknown"
        retry = limiter.check(group, limiter.client_ip(peer, request.headers.get("x-forwarded-for")))
        if retry is not None:
            body, headers = _refusal(group, retry)
            raise HTTPException(429, body["detail"], headers=headers)

    return dependency
