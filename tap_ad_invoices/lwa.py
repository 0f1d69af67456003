"""Login with Amazon: refresh-token grant shared by Amazon Ads and Amazon Business.

One access token is reused by every thread until shortly before it expires;
`invalidate` (after a 401) forces the next caller to refresh. Token values are
registered with the log redactor the moment they are minted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import requests

from tap_ad_invoices.errors import ApiError, AuthorizationExpired
from tap_ad_invoices.http import RetryPolicy, describe_error
from tap_ad_invoices.redaction import register_secret

LOGGER = logging.getLogger("tap_ad_invoices.lwa")

LWA_TOKEN_URLS = {
    "NA": "https://api.amazon.com/auth/o2/token",
    "EU": "https://api.amazon.co.uk/auth/o2/token",
    "FE": "https://api.amazon.co.jp/auth/o2/token",
    "JP": "https://api.amazon.co.jp/auth/o2/token",
}

# Refresh this long before the announced expiry, so a token never dies mid-call.
EXPIRY_MARGIN_SECONDS = 120


class LoginWithAmazon:
    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        settings_prefix: str,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._settings_prefix = settings_prefix  # "amazon_ads" or "amazon_business", for messages
        self._session = session or requests.Session()
        self._retry = retry or RetryPolicy(max_tries=4)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refresh_count = 0
        for secret in (client_secret, refresh_token):
            register_secret(secret)

    def access_token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _refresh(self) -> None:
        body = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        for attempt in range(1, self._retry.max_tries + 1):
            try:
                response = self._session.post(self.token_url, data=body, timeout=(10, 60))
            except requests.exceptions.RequestException as exc:
                if attempt == self._retry.max_tries:
                    raise ApiError(
                        f"Login with Amazon token request failed: {type(exc).__name__}"
                    ) from None
                self._sleep(self._retry.backoff(attempt))
                continue
            if response.status_code == 200:
                payload = response.json()
                self._token = payload["access_token"]
                register_secret(self._token)
                expires_in = float(payload.get("expires_in", 3600))
                self._expires_at = self._clock() + max(0.0, expires_in - EXPIRY_MARGIN_SECONDS)
                self.refresh_count += 1
                LOGGER.info("Login with Amazon: new access token, valid %.0fs", expires_in)
                return
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self._retry.max_tries:
                    break
                self._sleep(self._retry.backoff(attempt))
                continue
            # Never log the body verbatim: token endpoints may echo what they were sent.
            code, _ = describe_error(response)
            if code in ("invalid_grant", "unauthorized_client", "invalid_client"):
                raise AuthorizationExpired(
                    f"Login with Amazon refused the credentials ({code}): re-authorise the "
                    f"application and put the new refresh token in "
                    f"{self._settings_prefix}.refresh_token (and check "
                    f"{self._settings_prefix}.client_id / client_secret)"
                )
            raise ApiError(
                f"Login with Amazon token request failed: HTTP {response.status_code} {code or ''}"
            )
        raise ApiError("Login with Amazon token endpoint kept failing (429/5xx)")
