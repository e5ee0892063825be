"""The HTTP client under the Resend SDK (its documented `default_http_client` hook), ours
for two reasons: the SDK's own client opens a new connection for every request (ours keeps one
`requests.Session`, a keep-alive pool, per thread and uses only its public API), and it
encodes a batch's JSON with the standard library (ours: orjson, for requests whose emails all
carry our row-id tag).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any


@cache
def session_client_class() -> type:
    """`_SessionClient`, defined on first use: importing the resend SDK (and requests) costs a
    worker ~0.2 s of start-up, and only a process that sends through Resend needs it."""
    import orjson
    import requests
    from requests.adapters import HTTPAdapter
    from resend.http_client import HTTPClient

    class _Adapter(HTTPAdapter):
        """requests' adapter, its pool key per origin computed once (requests checks whether
        the CA bundle path is a directory on every request)."""

        def __init__(self) -> None:
            super().__init__()
            self._keys: dict[tuple, tuple[dict, dict]] = {}

        def build_connection_pool_key_attributes(self, request, verify, cert=None):
            url = request.url or ""
            key = (_origin(url), verify, cert)
            found = self._keys.get(key)
            if found is None:
                found = self._keys[key] = super().build_connection_pool_key_attributes(
                    request, verify, cert)
            return dict(found[0]), dict(found[1])

    class _SessionClient(HTTPClient):
        """The SDK's HTTP client contract over one keep-alive `requests.Session` per thread.
        Same timeout, no redirects (an API call is not redirected), same exceptions (the SDK
        wraps them as ResendError code 500 "HttpClientError").

        What requests reads from the environment on every request (proxies, no_proxy, the CA
        bundle) is read once per origin and passed with each request; ~/.netrc is not read
        (the SDK authenticates with the API key; a netrc entry would replace that header)."""

        def __init__(self, timeout: float) -> None:
            self._timeout = timeout
            self._local = threading.local()
            self._environment: dict[str, dict[str, Any]] = {}

        def _settings(self, url: str) -> dict[str, Any]:
            origin = _origin(url)
            found = self._environment.get(origin)
            if found is None:
                with requests.Session() as probe:  # requests' own reading, trust_env on
                    merged = probe.merge_environment_settings(origin, {}, None, None, None)
                found = self._environment[origin] = {
                    "proxies": merged["proxies"], "verify": merged["verify"],
                    "cert": merged["cert"]}
            return found

        def request(self, method, url, headers, json=None, files=None, data=None):
            if data is None and files is None and carries_outbox_tags(json):
                # orjson: a batch's 100 bodies encode ~7x faster than with requests' stdlib
                # json (~10% of a worker's CPU per broadcast email): compact UTF-8 JSON.
                data, json = orjson.dumps(json), None
                headers = {**headers, "Content-Type": "application/json"}
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = requests.Session()
                session.trust_env = False  # read once per origin instead (_settings)
                adapter = _Adapter()
                session.mount("https://", adapter)
                session.mount("http://", adapter)
            try:
                resp = session.request(
                    method, url, headers=headers, files=files, data=data,
                    json=json, timeout=self._timeout,
                    allow_redirects=False, **self._settings(url),
                )
                return resp.content, resp.status_code, resp.headers
            except requests.RequestException as exc:
                self._local.session = None  # a broken connection must not be reused
                session.close()
                raise RuntimeError(f"Request failed: {exc}") from exc

    return _SessionClient


def carries_outbox_tags(payload: Any) -> bool:
    """Does every email of this request body carry our row-id tag? One that does not may be
    the retry of a request an earlier version made under the same idempotency key (rows made
    before migration 0018): it is sent as that version encoded it (requests' json), byte for
    byte, so the provider cannot take it for a different request (409)."""
    items = payload if isinstance(payload, list) else [payload]
    return bool(items) and all(isinstance(i, dict) and "tags" in i for i in items)


def _origin(url: str) -> str:
    """scheme://host[:port] of `url`."""
    start = url.find("//")
    end = url.find("/", start + 2) if start >= 0 else -1
    return url if end < 0 else url[:end]
