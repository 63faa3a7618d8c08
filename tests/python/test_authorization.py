"""The authorization matrix: four principals against every route, on their own
resources and on another tenant's, each cell asserted by status and by data left
unchanged.

Principals (policy below):
    tenant-admin  read, write and admin on everything in tenant acme
    reader        read on acme/prod
    writer        write on acme/prod/articles only
    outsider      a valid certificate that the policy does not name

Resources: acme/prod/articles and acme/prod/payroll (own), globex/main/secrets
(foreign). A principal gets 404, exactly as for something missing, for whatever its
grants do not reach, and 403 for what it reaches but may not do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Dict, Optional

import httpx
import pytest

from conftest import ADMIN_GRANT, RavelinServer, run_ravelin

PRINCIPALS = ("tenant-admin", "reader", "writer", "outsider")

POLICY = ADMIN_GRANT + """
[[grant]]
principal = "tenant-admin"
actions = ["read", "write", "admin"]
tenant = "acme"
database = "*"
collection = "*"

[[grant]]
principal = "reader"
actions = ["read"]
tenant = "acme"
database = "prod"
collection = "*"

[[role]]
name = "ingest"
members = ["writer"]

[[grant]]
role = "ingest"
actions = ["write"]
tenant = "acme"
database = "prod"
collection = "articles"
"""

RECORD = {"ids": ["r1"], "embeddings": [[0.1, 0.2, 0.3]], "documents": ["kept"]}


@dataclass
class World:
    server: RavelinServer
    admin: httpx.Client
    ids: Dict[str, str]  # "tenant/database/collection" -> collection id

    def path(self, tenant: str, database: Optional[str] = None) -> str:
        """The API path of a tenant or database, relative to the clients' /api/v2."""
        path = f"/tenants/{tenant}"
        return path if database is None else f"{path}/databases/{database}"

    def make_database(self, tenant: str, database: str) -> None:
        response = self.admin.post(f"{self.path(tenant)}/databases", json={"name": database})
        assert response.status_code == 200, response.text

    def make_collection(self, tenant: str, database: str, name: str) -> str:
        response = self.admin.post(
            f"{self.path(tenant, database)}/collections", json={"name": name}
        )
        assert response.status_code == 200, response.text
        collection_id = response.json()["id"]
        added = self.admin.post(
            f"{self.path(tenant, database)}/collections/{collection_id}/add", json=RECORD
        )
        assert added.status_code in (200, 201), added.text
        self.ids[f"{tenant}/{database}/{name}"] = collection_id
        return collection_id

    def snapshot(self) -> dict:
        """Everything the matrix could change, read as the admin."""
        state = {}
        for tenant in ("acme", "globex"):
            databases = self.admin.get(f"{self.path(tenant)}/databases")
            assert databases.status_code == 200
            for database in sorted(d["name"] for d in databases.json()):
                listed = self.admin.get(f"{self.path(tenant, database)}/collections")
                for collection in sorted(listed.json(), key=lambda c: c["name"]):
                    records = self.admin.post(
                        f"{self.path(tenant, database)}/collections/{collection['id']}/get",
                        json={"include": ["documents", "embeddings"]},
                    ).json()
                    key = f"{tenant}/{database}/{collection['name']}"
                    state[key] = (collection["metadata"], collection["configuration_json"], records)
        return state


@pytest.fixture(scope="module")
def world(module_server_factory) -> World:
    root = module_server_factory.root
    policy = root / "matrix-policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    server = module_server_factory.start(extra_args=["--policy", str(policy)])
    for principal in PRINCIPALS:
        issued = run_ravelin(["pki", "issue-client", principal, "--data-dir", str(server.data_dir)])
        assert issued.returncode == 0, issued.stderr
    world = World(server, server.http_client("admin"), {})
    for tenant, database in (("acme", "prod"), ("globex", "main")):
        assert world.admin.post("/tenants", json={"name": tenant}).status_code == 200
        world.make_database(tenant, database)
    world.make_collection("acme", "prod", "articles")
    world.make_collection("acme", "prod", "payroll")
    world.make_collection("globex", "main", "secrets")
    return world


@pytest.fixture(scope="module")
def clients(world) -> Dict[str, httpx.Client]:
    return {principal: world.server.http_client(principal) for principal in PRINCIPALS}


# Expected statuses per route, in PRINCIPALS order, on the principal's own tenant
# (acme/prod/articles) and on the foreign one (globex/main/secrets).
OWN = "own"
FOREIGN = "foreign"
MATRIX = {
    "create_tenant": {OWN: (403, 403, 403, 403)},
    "reset": {OWN: (403, 403, 403, 403)},
    "get_tenant": {OWN: (200, 200, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "list_databases": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "create_database": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "get_database": {OWN: (200, 200, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "delete_database": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "list_collections": {OWN: (200, 200, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "count_collections": {OWN: (200, 200, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "create_collection": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "get_collection": {OWN: (200, 200, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "get_collection_by_id": {OWN: (200, 200, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "update_collection": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "delete_collection": {OWN: (200, 403, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "add": {OWN: (201, 403, 201, 404), FOREIGN: (404, 404, 404, 404)},
    "upsert": {OWN: (200, 403, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "update": {OWN: (200, 403, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "delete": {OWN: (200, 403, 200, 404), FOREIGN: (404, 404, 404, 404)},
    "count": {OWN: (200, 200, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "get": {OWN: (200, 200, 403, 404), FOREIGN: (404, 404, 404, 404)},
    "query": {OWN: (200, 200, 403, 404), FOREIGN: (404, 404, 404, 404)},
}

TARGETS = {OWN: ("acme", "prod", "articles"), FOREIGN: ("globex", "main", "secrets")}
# Routes that change data, run on a disposable copy when the principal may succeed.
DESTRUCTIVE = {"delete_database", "delete_collection", "update_collection", "add", "upsert",
               "update", "delete"}
RECORD_ROUTES = {"add", "upsert", "update", "delete", "count", "get", "query"}


def request(world: World, client: httpx.Client, route: str, tenant: str, database: str,
            collection: str) -> httpx.Response:
    base = world.path(tenant, database)
    collection_id = world.ids.get(f"{tenant}/{database}/{collection}", str(uuid.uuid4()))
    name = uuid.uuid4().hex[:10]
    if route == "create_tenant":
        return client.post("/tenants", json={"name": f"t-{name}"})
    if route == "reset":
        return client.post("/reset")
    if route == "get_tenant":
        return client.get(world.path(tenant))
    if route == "list_databases":
        return client.get(f"{world.path(tenant)}/databases")
    if route == "create_database":
        return client.post(f"{world.path(tenant)}/databases", json={"name": f"d-{name}"})
    if route == "get_database":
        return client.get(base)
    if route == "delete_database":
        return client.delete(base)
    if route == "list_collections":
        return client.get(f"{base}/collections")
    if route == "count_collections":
        return client.get(f"{base}/collections_count")
    if route == "create_collection":
        return client.post(f"{base}/collections", json={"name": f"c-{name}"})
    if route == "get_collection":
        return client.get(f"{base}/collections/{collection}")
    if route == "get_collection_by_id":
        return client.get(f"{base}/collections/by-id/{collection_id}")
    if route == "update_collection":
        return client.put(f"{base}/collections/{collection_id}", json={"new_metadata": {"m": name}})
    if route == "delete_collection":
        return client.delete(f"{base}/collections/{collection}")
    records = f"{base}/collections/{collection_id}"
    bodies = {
        "add": {"ids": [f"n-{name}"], "embeddings": [[0.3, 0.2, 0.1]]},
        "upsert": {"ids": ["r1"], "embeddings": [[0.5, 0.5, 0.5]], "documents": [name]},
        "update": {"ids": ["r1"], "documents": [name]},
        "delete": {"ids": ["r1"]},
        "get": {"include": ["documents"]},
        "query": {"query_embeddings": [[0.1, 0.2, 0.3]], "n_results": 1, "include": []},
    }
    if route == "count":
        return client.get(f"{records}/count")
    return client.post(f"{records}/{route}", json=bodies[route])


CELLS = [
    (route, target, index)
    for route, targets in MATRIX.items()
    for target in targets
    for index in range(len(PRINCIPALS))
]


@pytest.mark.parametrize(
    "route,target,index", CELLS, ids=[f"{r}-{t}-{PRINCIPALS[i]}" for r, t, i in CELLS]
)
def test_matrix_cell(world, clients, route, target, index):
    principal = PRINCIPALS[index]
    expected = MATRIX[route][target][index]
    tenant, database, collection = TARGETS[target]
    if route in DESTRUCTIVE and expected < 300:
        # The principal may do it: act on a disposable copy inside its grants.
        if route == "delete_database":
            database = f"scratch-{uuid.uuid4().hex[:8]}"
            world.make_database(tenant, database)
        else:
            collection = "articles" if principal == "writer" else f"scratch-{uuid.uuid4().hex[:8]}"
            if collection != "articles":
                world.make_collection(tenant, database, collection)
            else:
                world.admin.post(
                    f"{world.path(tenant, database)}/collections/{world.ids['acme/prod/articles']}/upsert",
                    json=RECORD,
                )
        response = request(world, clients[principal], route, tenant, database, collection)
        assert response.status_code == expected, response.text
        return

    before = world.snapshot()
    response = request(world, clients[principal], route, tenant, database, collection)
    assert response.status_code == expected, f"{principal} {route} {target}: {response.text}"
    if expected >= 400:
        assert world.snapshot() == before, f"{principal} {route} {target} changed data"
        assert "error" in response.json()


def test_hidden_answers_match_missing(world, clients):
    """A 404 for something outside the grants is byte-for-byte the 404 for something
    that does not exist, apart from the name in it."""
    missing_tenant = "/tenants/no-such-tenant"
    for principal in PRINCIPALS:
        client = clients[principal]
        hidden = client.get("/tenants/globex").json()
        missing = client.get(missing_tenant).json()
        assert hidden["error"] == missing["error"]
        assert hidden["message"].replace("globex", "X") == missing["message"].replace(
            "no-such-tenant", "X"
        )
    denials = [line for line in world.server.stderr_text().splitlines() if "request denied" in line]
    assert any("status=404" in line and "/tenants/globex" in line for line in denials), (
        "a hidden resource's denial is logged at info"
    )


def test_collection_id_from_another_tenant_is_missing(world, clients):
    """Threat 3: tenant acme's path with tenant globex's collection id, on every record
    and collection route, gets exactly the response for an id that does not exist."""
    secrets = world.ids["globex/main/secrets"]
    random_id = str(uuid.uuid4())
    before = world.snapshot()
    everyone = dict(clients, admin=world.admin)
    for principal, client in everyone.items():
        for route in sorted(RECORD_ROUTES) + ["get_collection_by_id", "update_collection"]:
            answers = []
            for collection_id in (secrets, random_id):
                world.ids["acme/prod/probe"] = collection_id
                response = request(world, client, route, "acme", "prod", "probe")
                body = response.json()
                message = body["message"].replace(collection_id, "ID")
                answers.append((response.status_code, body["error"], message))
            assert answers[0] == answers[1], (principal, route, answers)
            assert answers[0][0] == 404, (principal, route, answers)
    world.ids.pop("acme/prod/probe", None)
    assert world.snapshot() == before


def test_foreign_tenant_name_in_path(world, clients):
    """Threat 4: tenant acme's credentials with tenant globex's name in the path."""
    client = clients["tenant-admin"]
    before = world.snapshot()
    assert client.get("/tenants/globex/databases/main/collections").status_code == 404
    assert client.post(
        "/tenants/globex/databases/main/collections", json={"name": "planted"}
    ).status_code == 404
    assert client.post("/tenants/globex/databases", json={"name": "planted"}).status_code == 404
    assert world.snapshot() == before


def test_identity_reports_reachable_tenant_and_databases(clients):
    assert clients["reader"].get("/auth/identity").json() == {
        "user_id": "reader",
        "tenant": "acme",
        "databases": ["prod"],
    }
    assert clients["tenant-admin"].get("/auth/identity").json()["databases"] == ["*"]
    assert clients["outsider"].get("/auth/identity").status_code == 403


def test_stock_client_bound_by_identity(world):
    """A principal whose grants name one tenant and one database reaches them through
    the stock client without naming either, when the client asks to use them."""
    from chromadb.config import Settings

    settings = Settings(chroma_overwrite_singleton_tenant_database_access_from_auth=True)
    client = world.server.connect("reader", settings=settings)
    assert {"articles", "payroll"} <= {c.name for c in client.list_collections()}
    assert client.get_collection("articles").count() >= 0
