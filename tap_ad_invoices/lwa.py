"""Login with Amazon: refresh-token grant shared by Amazon Ads and Amazon Business.

One access token is reused by every thread until shortly before it expires;
`invalidate` (after a 401) forces the next caller to refresh. Token values are
registered with the log redactor the moment they are minted.

The token call goes through the shared `HttpClient`, so it retries 429/5xx and
dropped connections within `max_retry_seconds`, and a token host that refuses
connections ends as "cannot reach HOST". A refused refresh token is remembered:
it will not start working again during this run, so every later caller gets the
same `AuthorizationExpired` without another token call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import requests

from tap_ad_invoices.errors import ApiError, AuthorizationExpired
from tap_ad_invoices.http import (
    HostHealth,
    HostUnreachable,
    HttpClient,
    RetryPolicy,
    host_of,
    json_body,
)
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
# OAuth error codes that mean the credentials themselves are refused: a human must act.
REFUSED_CREDENTIALS = ("invalid_grant", "unauthorized_client", "invalid_client")


class AppCredentials(Protocol):
    """What a source's settings carry for Login with Amazon (a region's, a store's)."""

    @property
    def token_url(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def refresh_token(self) -> str: ...
    @property
    def setting(self) -> str: ...  # where refresh_token is set: "amazon_business.stores[1]"


class LoginWithAmazon:
    @classmethod
    def for_settings(
        cls, settings: AppCredentials, *, retry: RetryPolicy | None = None
    ) -> LoginWithAmazon:
        return cls(
            token_url=settings.token_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
            settings_prefix=settings.setting,  # names the region's or store's setting
            retry=retry,
        )

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
        hosts: HostHealth | None = None,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._settings_prefix = settings_prefix  # "amazon_ads" or "amazon_business", for messages
        # The app's client id and secret: the section's, also when the refresh token is a
        # store's (amazon_business.stores[1] -> amazon_business).
        self._client_prefix = settings_prefix.split(".", 1)[0].split("[", 1)[0]
        self._http = HttpClient(
            base_url="",
            retry=retry,
            sleep=sleep,
            session=session,
            timeout=(10.0, 60.0),
            hosts=hosts,
            source=self._client_prefix,  # a token call spends the source's quota of calls
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refused: AuthorizationExpired | None = None
        self.refresh_count = 0
        for secret in (client_secret, refresh_token):
            register_secret(secret)

    def access_token(self) -> str:
        with self._lock:
            if self._refused is not None:
                raise AuthorizationExpired(str(self._refused))
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
        try:
            response = self._http.request(
                "POST",
                self.token_url,
                operation="Login with Amazon token request",
                authenticated=False,
                ok=(200,),
                data=body,
            )
        except HostUnreachable:
            raise
        except ApiError as exc:
            if exc.code in REFUSED_CREDENTIALS:
                self._refused = self._refusal(exc.code)
                raise self._refused from None
            if exc.status is None or exc.status == 429 or exc.status >= 500:
                # The endpoint kept failing for max_retry_seconds: not the credentials' fault,
                # and no other item should wait that long again.
                raise self._http.hosts.give_up(host_of(self.token_url), str(exc)) from None
            # Never the body verbatim: token endpoints may echo what they were sent.
            raise ApiError(
                f"Login with Amazon token request failed: HTTP {exc.status} {exc.code or ''}",
                status=exc.status,
                code=exc.code,
            ) from None
        payload = json_body(response, "Login with Amazon token request")
        self._token = str(payload["access_token"])
        register_secret(self._token)
        expires_in = float(payload.get("expires_in", 3600))
        self._expires_at = self._clock() + max(0.0, expires_in - EXPIRY_MARGIN_SECONDS)
        self.refresh_count += 1
        LOGGER.info("Login with Amazon: new access token, valid %.0fs", expires_in)

    def _refusal(self, code: str) -> AuthorizationExpired:
        return AuthorizationExpired(
            f"Login with Amazon refused the credentials ({code}): re-authorise the "
            f"application and put the new refresh token in "
            f"{self._settings_prefix}.refresh_token (and check "
            f"{self._client_prefix}.client_id / client_secret)"
        )
