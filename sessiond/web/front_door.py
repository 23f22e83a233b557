"""The front door: every middleware's part, composed into one middleware, in the order that matters.

A chain of eight aiohttp middlewares cost about half of a detail request (each
layer a coroutine frame, each asking the route's policy again). The parts live
in web/front/, each in its module and tested there as the function called here
(request_id.begin, forwarded.as_client_sees_it, ratelimit.RateLimiter,
auth.authenticate, errors.answer_error, the metrics recorder); this calls them
in turn, with what the route asks (policy, scope, labels) worked out once per route:

1. request id first, so every response, even an error from a later part, carries it
   (stamped here on what the handler returns or raises; a streamed response, sent from
   inside its handler, is stamped by request_id.prepare_stamped);
2. metrics around everything below, to see the final status;
3. errors around the handler and the checks, so whatever they raise leaves as JSON;
4. forwarded settles who the client is before anything keys on it;
5. the per-IP limit before auth, so guessing tokens is rate limited too;
6. auth, then the per-token limit, which needs to know the token is genuine (and its name:
   the limit is per token name), then the scope the route needs (a refused call counts too);
7. readiness last: only a genuine, admitted client learns the index is not whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Middleware

from sessiond.core.audit import AuditFailed
from sessiond.core.tokens import Scope
from sessiond.web.appkeys import AUDIT
from sessiond.web.front.auth import authenticate, forbidden
from sessiond.web.front.errors import answer_error
from sessiond.web.front.forwarded import as_client_sees_it
from sessiond.web.front.ratelimit import client_key, too_many
from sessiond.web.front.readiness import not_ready
from sessiond.web.front.request_id import actor_of, begin, stamp
from sessiond.web.metrics import METHODS
from sessiond.web.routes import Need, Policy, need_of, policy_of
from sessiond.web.runtime import Runtime
from sessiond.web.typedefs import Handler

# The metrics' recorder: route label, method label, status, seconds, the token's name (or None).
Recorder = Callable[[str, str, int, float, str | None], None]


class _Gate(NamedTuple):
    """What the front door asks of a route, worked out once per route and method (not per request)."""

    open: bool  # no token asked: a probe or the page's files
    monitoring: bool  # no token asked while metrics are public (a reload may change that)
    limited: bool  # the per-IP and per-token limits apply
    whole: bool  # 503 until the index is whole
    need: Need  # the scope a token needs here
    route: str  # the metrics' labels
    method: str


def _gate_of(request: web.Request) -> _Gate:
    policy = policy_of(request)
    resource = request.match_info.route.resource
    return _Gate(
        open=policy in (Policy.PROBE, Policy.PAGE),
        monitoring=policy is Policy.MONITORING,
        limited=policy.rate_limited,
        whole=policy.needs_whole_index,
        need=need_of(request),
        route=resource.canonical if resource is not None else "unmatched",
        method=request.method if request.method in METHODS else "other",
    )


def front_door(runtime: Runtime, not_serving: Callable[[], str | None], record: Recorder) -> Middleware:
    """The one middleware of the API (see the module docstring for the order and why)."""
    # (route, method) -> its gate. Routes are a fixed set; an unmatched request (404, 405)
    # has a route made for it alone and is worked out afresh, so this never grows past the table.
    gates: dict[tuple[web.AbstractRoute, str], _Gate] = {}

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = begin(request)  # 1
        started = time.perf_counter()
        route = request.match_info.route
        if route.resource is None:
            gate = _gate_of(request)
        elif (gate := gates.get((route, request.method))) is None:  # type: ignore[assignment]
            gate = gates[route, request.method] = _gate_of(request)
        status = 500
        try:
            try:  # 3
                response = await _admit(request, handler, runtime, not_serving, gate)
            except Exception as exc:
                response = answer_error(request, exc)
            status = response.status
            if not response.prepared:
                stamp(request, response.headers)
            return response
        except web.HTTPException as exc:  # a redirect, or JSON already: passed on as aiohttp raised it
            status = exc.status
            stamp(request, exc.headers)
            raise
        finally:
            token = info.token
            record(gate.route, gate.method, status, time.perf_counter() - started, token.name if token else None)  # 2

    return front


async def _admit(
    request: web.Request, handler: Handler, runtime: Runtime, not_serving: Callable[[], str | None], gate: _Gate
) -> web.StreamResponse:
    request = as_client_sees_it(request, runtime.proxies)  # 4
    limiter = runtime.ip_limiter if gate.limited else None
    if limiter is not None and not await limiter.allow(client_key(request.remote)):  # 5
        return too_many(limiter)
    if not (gate.open or (gate.monitoring and runtime.metrics_public)):  # 6
        token = await authenticate(request, runtime)
        if isinstance(token, web.StreamResponse):
            return token
        limiter = runtime.limiter_for(token) if gate.limited else None
        if limiter is not None and not await limiter.allow(token.name):
            return too_many(limiter)
        need = gate.need
        if (refused := forbidden(token, need.scope, need.doing)) is not None:
            if need.scope is Scope.DELETE:  # a deletion or restore refused: the audit says who tried
                await _audit_refusal(request, need.doing)
            return refused
    if gate.whole and (why := not_serving()):  # 7
        return not_ready(why)
    return await handler(request)


async def _audit_refusal(request: web.Request, doing: str) -> None:
    action = "restore" if doing.startswith("restore") else "delete"
    reason = f"the token's scope may not {doing}"
    write = functools.partial(
        request.app[AUDIT].write, actor_of(request), action, "refused", request.match_info.get("key"), None, reason=reason
    )
    with contextlib.suppress(AuditFailed):  # logged by the trail; the answer is a refusal either way
        await asyncio.get_running_loop().run_in_executor(None, write)
