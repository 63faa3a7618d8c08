"""Bearer tokens, the policy file and its reload, on the real binary.

Tokens are off by default. With ``[tokens] enabled = true`` a request may carry one
in ``Authorization: Bearer`` or ``X-Chroma-Token``. The token must name the same
principal as the client certificate, unless ``without_certificate`` lets it stand
alone.
"""

from __future__ import annotations

import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN_GRANT, RavelinServer, run_ravelin

READER_POLICY = ADMIN_GRANT + """
[[grant]]
principal = "reader"
actions = ["read"]
tenant = "default_tenant"
database = "default_database"
collection = "*"
"""

WRITER_READS = """
[[grant]]
principal = "writer"
actions = ["read"]
tenant = "default_tenant"
database = "default_database"
collection = "*"
"""

COLLECTIONS = "/tenants/default_tenant/databases/default_database/collections"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def start(factory, tmp_path: Path, tokens: str = "", policy: str = READER_POLICY) -> RavelinServer:
    policy_file = write(tmp_path / "policy.toml", policy)
    config = write(tmp_path / "ravelin.toml", tokens)
    server = factory.start(extra_args=["--policy", str(policy_file), "--config", str(config)])
    for principal in ("reader", "writer"):
        issued = run_ravelin(["pki", "issue-client", principal, "--data-dir", str(server.data_dir)])
        assert issued.returncode == 0, issued.stderr
    return server


def create_token(server: RavelinServer, principal: str, expires: str = "30d") -> str:
    created = run_ravelin(
        ["token", "create", "--principal", principal, "--expires", expires,
         "--data-dir", str(server.data_dir)]
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("rvl_")
    assert token not in created.stderr
    return token


def token_ids(server: RavelinServer) -> list:
    listed = run_ravelin(["token", "list", "--data-dir", str(server.data_dir)])
    assert listed.returncode == 0, listed.stderr
    return [line.split()[0] for line in listed.stdout.splitlines()[1:]]


def no_certificate_client(server: RavelinServer) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(server.paths()[0]))
    return httpx.Client(base_url=server.base_url, verify=context, timeout=10.0)


@pytest.fixture
def token_server(server_factory, tmp_path) -> RavelinServer:
    return start(server_factory, tmp_path, "[tokens]\nenabled = true\n")


def test_token_with_its_certificate(token_server):
    token = create_token(token_server, "reader")
    with token_server.http_client("reader") as client:
        bearer = client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
        chroma = client.get(COLLECTIONS, headers={"X-Chroma-Token": token})
        both = client.get(
            COLLECTIONS, headers={"Authorization": f"Bearer {token}", "X-Chroma-Token": token}
        )
    assert (bearer.status_code, chroma.status_code, both.status_code) == (200, 200, 200)
    stored = (token_server.data_dir / "tokens.toml").read_text(encoding="utf-8")
    assert token not in stored
    assert token.split("_")[2] not in stored


def test_token_of_another_principal_refused(token_server):
    token = create_token(token_server, "reader")
    with token_server.http_client("writer") as client:
        response = client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "different principal" in response.json()["message"]
    assert token not in response.text


def test_revoked_token_refused_at_once(token_server):
    token = create_token(token_server, "reader")
    [token_id] = token_ids(token_server)
    revoked = run_ravelin(["token", "revoke", token_id, "--data-dir", str(token_server.data_dir)])
    assert revoked.returncode == 0, revoked.stderr
    with token_server.http_client("reader") as client:
        response = client.get(COLLECTIONS, headers={"X-Chroma-Token": token})
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]


def test_expired_token_refused(token_server):
    token = create_token(token_server, "reader")
    path = token_server.data_dir / "tokens.toml"
    text = path.read_text(encoding="utf-8")
    lines = [
        "expires_unix = 1000" if line.startswith("expires_unix") else line
        for line in text.splitlines()
    ]
    text = "\n".join(
        "created_unix = 0" if line.startswith("created_unix") else line for line in lines
    )
    path.write_text(text + "\n", encoding="utf-8")
    with token_server.http_client("reader") as client:
        response = client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic cmVhZGVyOnB3"},
        {"Authorization": "Bearer " + "a" * 100_000},
        {"X-Chroma-Token": "rvl_0123456789abcdef_" + "g" * 64},
        {"X-Chroma-Token": "not-a-token"},
    ],
    ids=["empty", "scheme-only", "basic", "100-kb", "bad-hex", "free-text"],
)
def test_malformed_tokens_refused(token_server, headers):
    with token_server.http_client("reader") as client:
        response = client.get(COLLECTIONS, headers=headers)
    assert response.status_code in (401, 431), response.text
    if response.status_code == 401:
        assert response.json()["error"] == "AuthError" or "Unauthenticated" in response.text


def test_non_ascii_token_refused(token_server):
    with token_server.http_client("reader") as client:
        response = client.get(
            COLLECTIONS, headers=[(b"X-Chroma-Token", "rvl_é".encode("utf-8"))]
        )
    assert response.status_code == 401


def test_two_different_tokens_refused(token_server):
    first = create_token(token_server, "reader")
    second = create_token(token_server, "reader")
    with token_server.http_client("reader") as client:
        response = client.get(
            COLLECTIONS, headers={"Authorization": f"Bearer {first}", "X-Chroma-Token": second}
        )
    assert response.status_code == 401
    assert "two different tokens" in response.json()["message"]


def test_token_without_certificate_refused_by_default(token_server):
    token = create_token(token_server, "reader")
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        with no_certificate_client(token_server) as client:
            client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
    assert token_server.is_running()


def test_token_without_certificate_when_allowed(server_factory, tmp_path):
    server = start(
        server_factory, tmp_path, "[tokens]\nenabled = true\nwithout_certificate = true\n"
    )
    token = create_token(server, "reader")
    with no_certificate_client(server) as client:
        allowed = client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
        anonymous = client.get(COLLECTIONS)
        reset = client.post("/reset")
        create = client.post("/tenants", json={"name": "planted"})
    assert allowed.status_code == 200
    # Threat 21: no credentials at all on reset and an admin route.
    assert (anonymous.status_code, reset.status_code, create.status_code) == (401, 401, 401)
    with server.http_client("reader") as client:
        assert client.get(COLLECTIONS).status_code == 200, "certificates still work"


def test_token_refused_when_tokens_disabled(server_factory, tmp_path):
    server = start(server_factory, tmp_path)
    token = create_token(server, "reader")
    with server.http_client("reader") as client:
        response = client.get(COLLECTIONS, headers={"Authorization": f"Bearer {token}"})
        plain = client.get(COLLECTIONS)
    assert response.status_code == 401
    assert "not enabled" in response.json()["message"]
    assert plain.status_code == 200


def test_stock_client_sends_token(token_server):
    from chromadb.config import Settings

    token = create_token(token_server, "reader")
    settings = Settings(
        chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
        chroma_client_auth_credentials=token,
    )
    client = token_server.connect("reader", settings=settings)
    assert client.list_collections() == []


# The policy file: threat 5 and the reload on SIGHUP.


def test_missing_policy_refuses_start(tmp_path):
    result = run_ravelin(
        ["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--policy", str(tmp_path / "absent.toml")],
        timeout=60,
    )
    assert result.returncode != 0
    assert "does not start without a policy" in result.stderr


def test_invalid_policy_refuses_start(tmp_path):
    policy = write(tmp_path / "bad.toml", "[[grant]]\nprincipal = \"a\"\nallow_all = true\n")
    result = run_ravelin(
        ["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--policy", str(policy)],
        timeout=60,
    )
    assert result.returncode != 0
    assert "invalid policy file" in result.stderr


def test_policy_granting_nothing_denies_everything(server_factory, tmp_path):
    server = start(server_factory, tmp_path, policy="# nothing granted\n")
    with server.http_client("admin") as client:
        statuses = {
            "list": client.get(COLLECTIONS).status_code,
            "create": client.post(COLLECTIONS, json={"name": "c"}).status_code,
            "tenant": client.post("/tenants", json={"name": "t"}).status_code,
            "reset": client.post("/reset").status_code,
            "identity": client.get("/auth/identity").status_code,
        }
    assert statuses == {"list": 404, "create": 404, "tenant": 403, "reset": 403, "identity": 403}


def test_sighup_reloads_policy_and_keeps_it_on_error(server_factory, tmp_path):
    server = start(server_factory, tmp_path)
    policy = tmp_path / "policy.toml"
    with server.http_client("writer") as writer:
        assert writer.get(COLLECTIONS).status_code == 404

        write(policy, READER_POLICY + WRITER_READS)
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded the policy" in server.stderr_text())
        assert writer.get(COLLECTIONS).status_code == 200

        write(policy, "[[grant]]\nbroken = true\n")
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "cannot reload the policy" in server.stderr_text())
        assert writer.get(COLLECTIONS).status_code == 200, "the previous policy stays"
    assert server.is_running()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_policy_check_prints_what_each_principal_may_do(tmp_path):
    policy = write(
        tmp_path / "policy.toml",
        READER_POLICY + "\n[[role]]\nname = \"ingest\"\nmembers = [\"etl\"]\n\n"
        "[[grant]]\nrole = \"ingest\"\nactions = [\"write\"]\ntenant = \"t\"\n"
        "database = \"d\"\ncollection = \"c\"\n",
    )
    result = run_ravelin(["policy", "check", str(policy)])
    assert result.returncode == 0, result.stderr
    assert "is valid: 3 grants for 3 principals" in result.stdout
    assert "principal [etl], member of role [ingest]" in result.stdout
    assert "write on tenant [t], database [d], collection [c] (through role [ingest])" in result.stdout

    bad = write(tmp_path / "bad.toml", "[[grant]]\nrole = \"missing\"\nactions = [\"read\"]\n"
                "tenant = \"*\"\ndatabase = \"*\"\ncollection = \"*\"\n")
    result = run_ravelin(["policy", "check", str(bad)])
    assert result.returncode == 1
    assert "role [missing]" in result.stderr
