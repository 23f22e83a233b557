"""The front door: every part a request passes, composed around each route's handler, in the order that matters.

A chain of eight aiohttp middlewares cost about half of a detail request (each
layer a coroutine frame, each asking the route's policy again); one composed
middleware still cost aiohttp's two wrappers per request and a lookup of the
route's gate. So there is no middleware: routes.add_routes wraps each handler in
a guard made here, which knows its route's gate (policy, scope, labels) from the
start; an unknown path or method meets a route of its own (routes.unmatched).
The parts live in web/front/, each in its module and tested there as the
function called here (request_id.begin, forwarded.as_client_sees_it,
ratelimit.RateLimiter, auth.authenticate, errors.answer_error, the metrics
recorder); this calls them in turn:

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
from sessiond.web.routes import Guard, Need, Policy
from sessiond.web.runtime import Runtime
from sessiond.web.typedefs import Handler

# The metrics' recorder: route label, method label, status, seconds, the token's name (or None).
Recorder = Callable[[str, str, int, float, str | None], None]


class Gate(NamedTuple):
    """What the front door asks of one route: worked out once, when the route is registered."""

    open: bool  # no token asked: a probe or the page's files
    monitoring: bool  # no token asked while metrics are public (a reload may change that)
    limited: bool  # the per-IP and per-token limits apply
    whole: bool  # 503 until the index is whole
    need: Need  # the scope a token needs here
    route: str  # the metrics' route label: the path template, or "unmatched"


def gate_of(policy: Policy, need: Need, route: str) -> Gate:
    """The gate of a route with this *policy*, *need* and metrics label."""
    return Gate(
        open=policy in (Policy.PROBE, Policy.PAGE),
        monitoring=policy is Policy.MONITORING,
        limited=policy.rate_limited,
        whole=policy.needs_whole_index,
        need=need,
        route=route,
    )


def front_door(runtime: Runtime, not_serving: Callable[[], str | None], record: Recorder) -> Guard:
    """The front door, as a guard each route's handler is wrapped in (see the module docstring for the order and why).

    Not an aiohttp middleware: a middleware is a coroutine aiohttp wraps around every
    handler on every request (two, with its own for sub-applications), and looks up the
    route's gate again; a guard is one closure per route, its gate known when it is made.
    """

    def guard(handler: Handler, policy: Policy, need: Need, label: str) -> Handler:
        gate = gate_of(policy, need, label)

        async def front(request: web.Request) -> web.StreamResponse:
            info = begin(request)  # 1
            started = time.perf_counter()
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
                method = request.method
                record(
                    gate.route,
                    method if method in METHODS else "other",
                    status,
                    time.perf_counter() - started,
                    token.name if token else None,
                )  # 2

        return front

    return guard


async def _admit(
    request: web.Request, handler: Handler, runtime: Runtime, not_serving: Callable[[], str | None], gate: Gate
) -> web.StreamResponse:
    request = as_client_sees_it(request, runtime.proxies)  # 4
    limiter = runtime.ip_limiter if gate.limited else None
    if limiter is not None and not limiter.allow(client_key(request.remote)):  # 5
        return too_many(limiter)
    if not (gate.open or (gate.monitoring and runtime.metrics_public)):  # 6
        token = await authenticate(request, runtime)
        if isinstance(token, web.StreamResponse):
            return token
        limiter = runtime.limiter_for(token) if gate.limited else None
        if limiter is not None and not limiter.allow(token.name):
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
