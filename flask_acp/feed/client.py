"""The HTTP client of one agent's Feed API (ACP 2026-04-17 ``openapi.feed.yaml``).

Operations (bodies are the spec's JSON; ``Authorization: Bearer <feed_token>``
when the agent's config has one; explicit timeout, no redirects):

=========================  ==========================================  ==============
``create_feed``            ``POST /feeds`` ``CreateFeedRequest``       201 ``FeedMetadata``
``get_feed``               ``GET /feeds/{id}``                         200 ``FeedMetadata``, 404
``upsert_products``        ``PATCH /feeds/{id}/products``              200 ``UpsertProductsResponse``
                           ``UpsertProductsRequest {products}``
=========================  ==========================================  ==============

The Feed API defines no ``Idempotency-Key``: a ``PATCH`` is idempotent by
nature (an upsert by ``Product.id``), so it may be repeated safely and the
client retries it (``retries``) on 429, 5xx and lost connections; ``POST
/feeds`` is never retried (a lost answer would leave a second feed).
Errors come back as the spec's flat ``Error {type, code, message, param}``.
"""

from __future__ import annotations

import typing as t
import urllib.parse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..webhooks.outbox import retryable_status


class FeedApiError(Exception):
    """A Feed API call that failed.

    :ivar status: the HTTP status, None when the API did not answer.
    :ivar code: the ``Error.code`` of the answer, if any (``feed_not_found``...).
    :ivar retryable: the failure may pass (timeouts, connection errors, 401, 408, 429, 5xx).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


class FeedClient:
    """One agent's Feed API.

    :param base_url: the agent's ``feed_url`` (the paths are appended to it).
    :param token: bearer token, or None.
    :param timeout: seconds per call (connect and read).
    :param retries: how many times a failed ``GET``/``PATCH`` is retried here
        (back-off 0.5 s, 1 s, 2 s...); 0 when someone else retries (the outbox).
    :param session: a ready ``requests.Session`` (tests); closed by :meth:`close`.
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0, retries: int = 3,
                 user_agent: str = "flask-acp (product feed)",
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.5,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET", "PATCH"}),
                      raise_on_status=False, respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = user_agent
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def create_feed(self, target_country: str | None = None) -> dict[str, t.Any]:
        """``POST /feeds``: a new feed; returns its ``FeedMetadata`` (``{id, target_country?, updated_at?}``).

        :raises FeedApiError: refused, or no answer (then it may exist: never retried here).
        """
        body = {"target_country": target_country} if target_country else {}
        return self._call("POST", "/feeds", body, expect=201)

    def get_feed(self, feed_id: str) -> dict[str, t.Any] | None:
        """``GET /feeds/{id}``: its ``FeedMetadata``, None when the agent does not know it (404).

        :raises FeedApiError: any other failure.
        """
        try:
            return self._call("GET", f"/feeds/{_quote(feed_id)}", None, expect=200)
        except FeedApiError as exc:
            if exc.status == 404:
                return None
            raise

    def upsert_products(self, feed_id: str, products: list[dict[str, t.Any]]) -> dict[str, t.Any]:
        """``PATCH /feeds/{id}/products`` ``{products}``: upserts by ``Product.id``
        (products not sent stay as they are); returns ``{id, accepted}``.

        :raises FeedApiError: refused (``accepted: false`` too), or no answer.
        """
        answer = self._call("PATCH", f"/feeds/{_quote(feed_id)}/products", {"products": products}, expect=200)
        if answer.get("accepted") is not True:
            raise FeedApiError(f"the Feed API did not accept the products of feed {feed_id}: {answer}",
                               status=200, retryable=False)
        return answer

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def _call(self, method: str, path: str, body: t.Any, *, expect: int) -> dict[str, t.Any]:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout,
                                            allow_redirects=False)
        except requests.Timeout:
            raise FeedApiError(f"{method} {url}: timed out after {self.timeout:g} s",
                               retryable=True) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise FeedApiError(f"{method} {url}: invalid feed_url: {exc}") from None
        except requests.RequestException as exc:
            raise FeedApiError(f"{method} {url}: {type(exc).__name__}: {exc}"[:300], retryable=True) from None
        with response:
            try:
                data = response.json()
            except ValueError:
                data = None
        if response.status_code != expect:
            error = data if isinstance(data, dict) else {}
            detail = str(error.get("message") or response.text[:200]).strip()
            raise FeedApiError(f"{method} {url}: HTTP {response.status_code}"
                               + (f": {detail}" if detail else ""),
                               status=response.status_code, code=t.cast(str | None, error.get("code")),
                               retryable=retryable_status(response.status_code))
        if not isinstance(data, dict):
            raise FeedApiError(f"{method} {url}: the answer is not a JSON object",
                               status=response.status_code, retryable=True)
        return data


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
