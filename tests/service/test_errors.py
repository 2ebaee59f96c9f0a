"""The one error type: its RFC 9457 body, read back from a stored body, and the WebSocket's
close code for it."""

from __future__ import annotations

import pytest

from bitnet_sdk.server.websocket import close_code, error_message
from bitnet_sdk.service.errors import ApiError, not_found


def test_problem_body_carries_every_member():
    error = ApiError(400, "Bad Request", "Invalid request: x (body) is required.",
                     slug="validation", headers={"Retry-After": "1"}, limit_bytes=5,
                     errors=[{"field": "x", "location": "body", "rule": "required",
                              "message": "is required"}])
    assert error.problem("req_abc") == {
        "type": "urn:bitnet:problem:validation", "title": "Bad Request", "status": 400,
        "detail": "Invalid request: x (body) is required.", "limit_bytes": 5,
        "errors": [{"field": "x", "location": "body", "rule": "required",
                    "message": "is required"}],
        "request_id": "req_abc"}
    assert "Retry-After" not in str(error.problem())  # headers are HTTP's, not the body's
    assert ApiError(500, "Internal Server Error").problem()["type"] == "about:blank"


def test_a_request_id_member_is_kept():
    assert ApiError(409, "Conflict", "x", request_id="req_own").problem("req_other")[
        "request_id"] == "req_own"


def test_a_stored_body_reads_back_as_the_same_error():
    error = ApiError(413, "Payload Too Large", "too big", slug="storage-quota-exceeded",
                     quota="storage", errors=[{"field": "file", "message": "too big"}])
    again = ApiError.from_problem(error.problem(), job_id="job_1")
    assert again.problem() == {**error.problem(), "job_id": "job_1"}
    assert (again.status, again.slug, again.title) == (413, "storage-quota-exceeded",
                                                       "Payload Too Large")
    assert ApiError.from_problem({"type": "about:blank"}, title="Job Failed").problem() == {
        "type": "about:blank", "title": "Job Failed", "status": 500, "detail": None}


@pytest.mark.parametrize(("status", "code"), [(401, 4401), (403, 4403), (429, 4429),
                                              (400, 1008), (404, 1008), (500, 1008)])
def test_websocket_close_codes_follow_the_status(status, code):
    assert close_code(ApiError(status, "x", "y")) == code


def test_websocket_error_message_carries_the_problem():
    error = not_found("Job", "job_1")
    assert error_message("r1", error, "req_1") == {
        "type": "error", "request_id": "r1", "error": error.problem("req_1")}
