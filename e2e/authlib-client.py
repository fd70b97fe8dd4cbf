"""Authlib's OAuth2Session on its defaults, for tests/clients.test.js.

Registers for client_secret_post, prints the authorization URL, reads the
callback URL from stdin (the browser's), then redeems the code and
refreshes (client_secret_post), introspects and revokes (Authlib's default
for those is client_secret_basic) and refreshes once more. Prints one JSON
object with what each step answered. Run with Debian's python3-authlib.
"""

import json
import os
import sys

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # http on loopback

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.integrations.base_client import OAuthError  # noqa: E402

base = os.environ["E2E_BASE"]
redirect = os.environ["E2E_REDIRECT"]
resource = base + "/mcp"

meta = requests.get(base + "/.well-known/oauth-authorization-server", timeout=10).json()
reg = requests.post(meta["registration_endpoint"], json={
    "client_name": "Authlib",
    "redirect_uris": [redirect],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_post",
}, timeout=10)
reg.raise_for_status()
registered = reg.json()

session = OAuth2Session(registered["client_id"], registered["client_secret"],
                        token_endpoint_auth_method="client_secret_post",
                        redirect_uri=redirect, scope="mcp:read", code_challenge_method="S256")
verifier = generate_token(48)
url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, resource=resource)
print(url, flush=True)
callback = sys.stdin.readline().strip()

out = {"revocation_endpoint_auth_method": session.revocation_endpoint_auth_method}
token = session.fetch_token(meta["token_endpoint"], authorization_response=callback,
                            code_verifier=verifier, resource=resource)
out["scope"] = token.get("scope")
token = session.refresh_token(meta["token_endpoint"])
out["refreshed"] = bool(token.get("access_token"))

answer = session.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
out["introspect"] = {"status": answer.status_code, "sent_basic": answer.request.headers.get("Authorization", "").startswith("Basic "),
                     "active": answer.json().get("active")}
answer = session.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token")
out["revoke"] = {"status": answer.status_code, "sent_basic": answer.request.headers.get("Authorization", "").startswith("Basic ")}
try:
    session.refresh_token(meta["token_endpoint"])
    out["refresh_after_revoke"] = "succeeded"
except OAuthError as e:
    out["refresh_after_revoke"] = e.error
print(json.dumps(out), flush=True)
