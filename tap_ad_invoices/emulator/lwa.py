"""Login with Amazon token endpoint (refresh-token grant), shared by both Amazon APIs."""

from __future__ import annotations

from tap_ad_invoices.emulator.core import Emulator, Request, Response, json_response

TOKEN_PATH = "/auth/o2/token"


def install(emulator: Emulator) -> None:
    # client_id -> (client_secret, refresh_token); sources add their own client.
    clients: dict[str, tuple[str, str]] = {}
    emulator.lwa_clients = clients  # type: ignore[attr-defined]

    @emulator.route("POST", TOKEN_PATH, "lwa.token")
    def token(request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != "refresh_token":
            return json_response(400, {"error": "unsupported_grant_type"})
        expected = clients.get(form.get("client_id", ""))
        if expected is None or expected[0] != form.get("client_secret"):
            return json_response(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        if emulator.knobs.get("lwa_invalid_grant") or expected[1] != form.get("refresh_token"):
            return json_response(
                400,
                {"error": "invalid_grant", "error_description": "The request has an invalid grant"},
            )
        access_token, ttl = emulator.mint_token(form["client_id"], "Atza|")
        return json_response(
            200,
            {
                "access_token": access_token,
                "refresh_token": form["refresh_token"],
                "token_type": "bearer",
                "expires_in": ttl,
            },
        )
