"""Each part of the front door tested as the function it calls (web/front_door.py composes them)."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from sessiond import config
from sessiond.core.errors import DeleteFailed, SessionNotFound, Unavailable
from sessiond.core.query import QueryError
from sessiond.core.tokens import NamedToken, Scope
from sessiond.web.front.auth import authenticate
from sessiond.web.front.errors import answer_error
from sessiond.web.front.readiness import not_ready
from sessiond.web.front.request_id import begin, info_of
from sessiond.web.runtime import Runtime
from tests.support import TOKEN


def body_of(response: web.StreamResponse) -> dict[str, object]:
    assert isinstance(response, web.Response) and response.body is not None
    return json.loads(bytes(response.body))  # type: ignore[arg-type]


@pytest.fixture
def runtime(tmp_path) -> Runtime:  # type: ignore[no-untyped-def]
    (tmp_path / "sessions").mkdir()
    return Runtime(config.validate({"workspace": str(tmp_path), "token": TOKEN}, env={}))


def test_begin_keeps_a_sane_request_id_and_replaces_any_other() -> None:
    sane = make_mocked_request("GET", "/", headers={"X-Request-ID": "abc-123"})
    assert begin(sane).id == "abc-123" and info_of(sane) is not None
    hostile = make_mocked_request("GET", "/", headers={"X-Request-ID": "no spaces\tor tabs"})
    fresh = begin(hostile).id
    assert fresh != "no spaces\tor tabs" and len(fresh) == 22
    assert begin(make_mocked_request("GET", "/")).id != fresh


async def test_authenticate_admits_the_token_and_names_it_for_the_per_token_limit(runtime: Runtime) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": f"bearer {TOKEN}"})
    info = begin(request)
    token = await authenticate(request, runtime)
    assert isinstance(token, NamedToken) and token.name == "admin" and token.scope is Scope.ADMIN
    assert info.token is token


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer "])
async def test_authenticate_refuses_anything_else_with_a_json_401(runtime: Runtime, header: str | None) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": header} if header else {})
    begin(request)
    refused = await authenticate(request, runtime)
    assert isinstance(refused, web.Response) and refused.status == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert body_of(refused) == {"detail": "Authentication required"}


def test_not_ready_is_a_503_that_says_why_and_when_to_retry() -> None:
    response = not_ready("starting: 3 of 10 files read")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert body_of(response) == {"detail": "Service unavailable: starting: 3 of 10 files read"}


@pytest.mark.parametrize(
    ("exc", "status", "detail"),
    [
        (SessionNotFound("k"), 404, "Session not found"),
        (DeleteFailed("read-only file system"), 503, "Session not deleted: read-only file system"),
        (Unavailable("Trash is off", status=404), 404, "Trash is off"),
        (web.HTTPMethodNotAllowed("PUT", ["GET"]), 405, "Method Not Allowed"),
    ],
)
def test_answer_error_gives_each_domain_error_its_status_and_a_json_detail(exc: Exception, status: int, detail: str) -> None:
    request = make_mocked_request("GET", "/")
    begin(request)
    response = answer_error(request, exc)
    assert response.status == status
    assert body_of(response)["detail"] == detail


def test_answer_error_names_the_bad_parameter() -> None:
    response = answer_error(make_mocked_request("GET", "/"), QueryError("limit", "must be a whole number"))
    assert response.status == 400 and body_of(response)["parameter"] == "limit"


def test_answer_error_turns_a_crash_into_a_500_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("GET", "/secret/path")
    info = begin(request)
    with caplog.at_level(logging.ERROR):
        response = answer_error(request, RuntimeError("/srv/internal/detail"))
    assert response.status == 500
    assert body_of(response) == {"detail": f"Internal server error (request id {info.id})"}
    assert "RuntimeError" in caplog.text  # the operator sees it; the client does not


def test_answer_error_passes_a_redirect_on() -> None:
    with pytest.raises(web.HTTPPermanentRedirect):
        answer_error(make_mocked_request("GET", "/ui"), web.HTTPPermanentRedirect("/ui/"))
