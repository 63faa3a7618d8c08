"""Routing and request-body edge cases over raw HTTP against the real server.

Each test gets its own server, so a request that crashes the process fails
only the test that sent it.
"""

from __future__ import annotations

import httpx
import pytest

from conftest import RavelinServer, run_ravelin

DB_PATH = "/tenants/default_tenant/databases/default_database"

UNKNOWN_API_PATHS = [
    "/nope",
    "/heartbeat/extra",
    "/tenants/default_tenant/nope",
    f"{DB_PATH}/collections/some-collection/nope",
    f"{DB_PATH}/collections/00000000-0000-4000-8000-000000000000/bogus",
]


def assert_still_serving(server: RavelinServer) -> None:
    assert server.is_running(), f"the server exited:\n{server.stderr_text()[-2000:]}"
    with server.http_client() as http:
        assert http.get("/heartbeat").status_code == 200


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
def test_unknown_api_route_not_found(server, path):
    with server.http_client() as http:
        response = http.get(path)

    assert response.status_code == 404, response.text
    assert_still_serving(server)


def test_unknown_route_outside_api(server):
    with httpx.Client(verify=server.ssl_context(), timeout=30.0) as http:
        response = http.get(f"https://127.0.0.1:{server.port}/nope")

    assert response.status_code == 404
    assert_still_serving(server)


def test_unknown_route_unauthorized_principal(server):
    issued = run_ravelin(["pki", "issue-client", "stranger", "--data-dir", str(server.data_dir)])
    assert issued.returncode == 0, issued.stderr

    with server.http_client("stranger") as http:
        response = http.get("/nope")

    assert response.status_code in (403, 404), response.text
    assert_still_serving(server)


def test_v1_api_gone(server):
    with httpx.Client(verify=server.ssl_context(), timeout=30.0) as http:
        response = http.get(f"https://127.0.0.1:{server.port}/api/v1/heartbeat")

    assert response.status_code == 410
    assert "v1" in response.json()["message"]


def test_wrong_method_not_allowed(server):
    with server.http_client() as http:
        response = http.delete("/heartbeat")

    assert response.status_code == 405
    assert_still_serving(server)


INVALID_ADD_BODIES = {
    "not-json": b"not json",
    "nan-literal": b'{"ids": ["n"], "embeddings": [[NaN, 1.0]]}',
    "float32-overflow": b'{"ids": ["n"], "embeddings": [[1e39, 1.0]]}',
    "base64-partial-float": b'{"ids": ["n"], "embeddings": ["AACAPwAA"]}',
    "base64-invalid": b'{"ids": ["n"], "embeddings": ["AACAPwAAAA"]}',
    "length-mismatch": b'{"ids": ["n", "m"], "embeddings": [[1.0, 0.0]]}',
    "dimension-mismatch": b'{"ids": ["n"], "embeddings": [[1.0, 0.0, 0.0]]}',
}


@pytest.mark.parametrize("case", INVALID_ADD_BODIES.keys())
def test_invalid_add_body_rejected(server, case):
    collection = server.connect().create_collection("target", embedding_function=None)
    collection.add(ids=["existing"], embeddings=[[1.0, 0.0]])

    with server.http_client() as http:
        response = http.post(
            f"{DB_PATH}/collections/{collection.id}/add",
            content=INVALID_ADD_BODIES[case],
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidArgumentError"
    assert collection.count() == 1


def test_error_carries_trace_id(server):
    """Found by Chroma's test suite (test_error_includes_trace_id): the stock client
    attaches the chroma-trace-id header of an error response to the exception."""
    with server.http_client() as http:
        response = http.get(f"{DB_PATH}/collections/no-such-collection")

    assert response.status_code == 404, response.text
    trace_id = response.headers.get("chroma-trace-id")
    assert trace_id is not None
    assert len(trace_id) == 32
    int(trace_id, 16)
