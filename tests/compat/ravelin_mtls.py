"""Pytest plugin that makes every httpx client in the test process present a client
certificate, so Chroma's test suite reaches Ravelin over mutual TLS unchanged.

The suite builds its clients from environment settings (CHROMA_SERVER_HOST,
CHROMA_SERVER_HTTP_PORT, CHROMA_SERVER_SSL_ENABLED). chromadb 1.5.9 has no
client-certificate setting, so this plugin wraps ``httpx.Client`` and
``httpx.AsyncClient`` and replaces their ``verify`` argument with an SSLContext that
trusts RAVELIN_CA and presents RAVELIN_CERT and RAVELIN_KEY. Load it with
``-p ravelin_mtls``; without RAVELIN_CA it does nothing.
"""

import os
import ssl

import httpx


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=os.environ["RAVELIN_CA"])
    context.load_cert_chain(os.environ["RAVELIN_CERT"], os.environ["RAVELIN_KEY"])
    return context


def _wrap(cls: type, context: ssl.SSLContext) -> None:
    original = cls.__init__

    def init_with_certificate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["verify"] = context
        original(self, *args, **kwargs)

    cls.__init__ = init_with_certificate  # type: ignore[method-assign]


if os.environ.get("RAVELIN_CA"):
    _shared_context = _context()
    _wrap(httpx.Client, _shared_context)
    _wrap(httpx.AsyncClient, _shared_context)
