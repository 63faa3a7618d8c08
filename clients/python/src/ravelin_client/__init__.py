"""Connect the stock ``chromadb`` Python client to a Ravelin server over mutual TLS.

Ravelin speaks ChromaDB's HTTP API v2 but requires every client to present a
certificate signed by its CA. The stock client (``chromadb`` 1.5.9) has no
client-certificate setting, but it passes ``Settings.chroma_server_ssl_verify``
unchanged to ``httpx.Client(verify=...)`` and ``httpx.AsyncClient(verify=...)``,
and httpx accepts an ``ssl.SSLContext`` there. The pydantic validation in the
``Settings`` constructor rejects an ``SSLContext``, so the helpers below assign
it after construction. The functions return ordinary ``ClientAPI`` /
``AsyncClientAPI`` / ``AdminAPI`` objects, so code that accepts a Chroma client
keeps working.

This relies on client internals, checked only with chromadb and chromadb-client
1.5.9. Any other version triggers a ``RuntimeWarning``.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, Optional, Tuple, Union

if TYPE_CHECKING:
    from chromadb.api import AdminAPI, AsyncClientAPI, ClientAPI
    from chromadb.config import Settings

__all__ = [
    "ServerConnectionError",
    "TESTED_CHROMADB_VERSION",
    "admin_connect",
    "client_ssl_context",
    "connect",
    "connect_async",
    "connect_data_dir",
    "data_dir_paths",
]

TESTED_CHROMADB_VERSION = "1.5.9"
"""The only chromadb version whose internals these helpers were tested against."""

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

PathLike = Union[str, "os.PathLike[str]"]


class ServerConnectionError(ConnectionError, ValueError):
    """The TCP connection or TLS handshake to the server failed.

    It is also a ``ValueError`` because the stock client raises ``ValueError``
    ("Could not connect to a Chroma server") in the same case. The underlying
    httpx error is the ``__cause__``.
    """


def client_ssl_context(ca: PathLike, cert: PathLike, key: PathLike) -> ssl.SSLContext:
    """Build a TLS 1.3 client context that trusts ``ca`` and presents ``cert``/``key``.

    Hostname checking and server-certificate verification are on. ``cert`` may
    contain the full chain (leaf first). The key must be an unencrypted PEM file.

    Raises:
        FileNotFoundError: a file is missing; the exception's ``filename`` is its path.
        ssl.SSLError: a file exists but is not a valid certificate or key, or the
            key does not match the certificate.
    """
    ca_path = _require_file(ca, "CA certificate")
    cert_path = _require_file(cert, "client certificate")
    key_path = _require_file(key, "client private key")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=ca_path)
    context.load_cert_chain(certfile=cert_path, keyfile=key_path)
    return context


def connect(
    host: str,
    port: int,
    ca: PathLike,
    cert: PathLike,
    key: PathLike,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
    headers: Optional[Dict[str, str]] = None,
    settings: Optional["Settings"] = None,
) -> "ClientAPI":
    """Open a synchronous ``chromadb`` client to a Ravelin server over mutual TLS.

    ``host`` must match a name or address in the server certificate (Ravelin's
    generated certificate covers ``localhost``, ``127.0.0.1`` and ``::1``).
    ``settings`` is copied, never modified. The constructor already sends
    requests (identity, tenant and database checks), so connection and TLS
    failures raise :class:`ServerConnectionError` here, and a principal without
    access to the tenant or database gets the server's ``ChromaError``.
    """
    chromadb = _import_chromadb()
    client_settings = _settings_with_context(settings, client_ssl_context(ca, cert, key))
    with _connection_errors(host, port):
        return chromadb.HttpClient(
            host=host,
            port=port,
            ssl=True,
            headers=dict(headers) if headers is not None else None,
            settings=client_settings,
            tenant=tenant,
            database=database,
        )


async def connect_async(
    host: str,
    port: int,
    ca: PathLike,
    cert: PathLike,
    key: PathLike,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
    headers: Optional[Dict[str, str]] = None,
    settings: Optional["Settings"] = None,
) -> "AsyncClientAPI":
    """Open an asynchronous ``chromadb`` client; the arguments are those of :func:`connect`."""
    chromadb = _import_chromadb()
    client_settings = _settings_with_context(settings, client_ssl_context(ca, cert, key))
    with _connection_errors(host, port):
        return await chromadb.AsyncHttpClient(
            host=host,
            port=port,
            ssl=True,
            headers=dict(headers) if headers is not None else None,
            settings=client_settings,
            tenant=tenant,
            database=database,
        )


def admin_connect(
    host: str,
    port: int,
    ca: PathLike,
    cert: PathLike,
    key: PathLike,
    headers: Optional[Dict[str, str]] = None,
    settings: Optional["Settings"] = None,
) -> "AdminAPI":
    """Open a ``chromadb`` admin client (tenants and databases) over mutual TLS.

    The stock ``chromadb.AdminClient`` takes only ``Settings``, so this fills in
    the fields that ``HttpClient`` would otherwise set: the HTTP API
    implementation, host, port, TLS and headers.
    """
    chromadb = _import_chromadb()
    admin_settings = _settings_with_context(settings, client_ssl_context(ca, cert, key))
    admin_settings.chroma_api_impl = "chromadb.api.fastapi.FastAPI"
    admin_settings.chroma_server_host = str(host)
    admin_settings.chroma_server_http_port = int(port)
    admin_settings.chroma_server_ssl_enabled = True
    admin_settings.chroma_server_headers = dict(headers) if headers is not None else None
    return chromadb.AdminClient(admin_settings)


def data_dir_paths(data_dir: PathLike, principal: str = "admin") -> Tuple[Path, Path, Path]:
    """Return the (CA, certificate, key) paths that ``ravelin serve`` and
    ``ravelin pki issue-client`` write for ``principal`` under ``data_dir``."""
    pki = Path(data_dir) / "pki"
    clients = pki / "clients"
    return pki / "ca.pem", clients / f"{principal}.pem", clients / f"{principal}.key"


def connect_data_dir(
    data_dir: PathLike = "ravelin-data",
    principal: str = "admin",
    host: str = "localhost",
    port: int = 8000,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
    headers: Optional[Dict[str, str]] = None,
    settings: Optional["Settings"] = None,
) -> "ClientAPI":
    """Connect as ``principal`` with the CA and client files of a local data directory.

    Meant for development on the server's own machine. The data directory
    also contains the CA private key, so production clients should get only a
    copy of ``ca.pem`` and their own certificate and key.
    """
    ca, cert, key = data_dir_paths(data_dir, principal)
    return connect(
        host,
        port,
        ca,
        cert,
        key,
        tenant=tenant,
        database=database,
        headers=headers,
        settings=settings,
    )


def _require_file(path: PathLike, description: str) -> str:
    path_str = os.fspath(path)
    if not os.path.isfile(path_str):
        raise FileNotFoundError(2, f"{description} file not found", path_str)
    return path_str


@contextlib.contextmanager
def _connection_errors(host: str, port: int) -> Iterator[None]:
    """Turn the stock client's connection failures into ServerConnectionError.

    The stock constructors raise either an httpx transport error or a
    ``ValueError`` whose context is one. The ValueError message drops the TLS reason.
    """
    import httpx

    try:
        yield
    except httpx.TransportError as error:
        raise _connection_error(host, port, error) from error
    except ValueError as error:
        if isinstance(error.__context__, httpx.TransportError):
            raise _connection_error(host, port, error.__context__) from error.__context__
        raise


def _connection_error(host: str, port: int, error: BaseException) -> ServerConnectionError:
    return ServerConnectionError(
        f"connection to {host}:{port} failed: {error}; check that the server is "
        "running, that the CA file is the server's CA, and that the client "
        "certificate was issued by the CA the server trusts"
    )


def _import_chromadb():  # type: ignore[no-untyped-def]
    """Import ``chromadb`` and warn when its version differs from the tested one."""
    try:
        import chromadb
    except ImportError as error:
        raise ImportError(
            "ravelin_client needs the chromadb module: install "
            f"'chromadb-client=={TESTED_CHROMADB_VERSION}' (or 'ravelin-client[client]')"
        ) from error

    version = getattr(chromadb, "__version__", "unknown")
    if version != TESTED_CHROMADB_VERSION:
        warnings.warn(
            f"ravelin_client was tested with chromadb {TESTED_CHROMADB_VERSION} only, "
            f"but chromadb {version} is installed; it relies on client internals "
            "(Settings.chroma_server_ssl_verify reaching httpx) that may have changed",
            RuntimeWarning,
            stacklevel=3,
        )
    return chromadb


def _settings_with_context(settings: Optional["Settings"], context: ssl.SSLContext) -> "Settings":
    """Return a copy of ``settings`` (or new settings without telemetry) carrying ``context``."""
    from chromadb.config import Settings

    if settings is None:
        result = Settings(anonymized_telemetry=False)
    else:
        result = settings.model_copy()

    # Plain assignment skips the constructor's validation, which accepts only a
    # bool or a CA path here. FastAPI and AsyncFastAPI pass the value to httpx.
    result.chroma_server_ssl_verify = context  # type: ignore[assignment]
    return result
