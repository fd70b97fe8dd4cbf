// Clients nobody here wrote, on their defaults: panva's openid-client
// registers for client_secret_basic and then authenticates with
// client_secret_post; it checks the authorization response's iss (RFC
// 9207) and refreshes. Authlib's OAuth2Session, registered for
// client_secret_post, introspects and revokes with client_secret_basic.
// openid-client (on panva's oauth4webapi) registers a public key and
// authenticates with private_key_jwt throughout, and, as a public client,
// uses DPoP through the code flow, refresh and the guarded MCP server. Run by e2e/run, which
// starts everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { randomUUID } from 'node:crypto';
import * as client from 'openid-client';
import { BASE, MCP_URL, REDIRECT, Browser, callbacks } from './harness.js';

let browser;
before(async () => { await callbacks.start(); browser = await Browser.launch(); });
after(async () => { await browser?.close(); await callbacks.stop(); });

test('openid-client on its defaults: registration, code flow with PKCE, the MCP server, refresh', async () => {
  const options = { execute: [client.allowInsecureRequests] }; // http on loopback
  const config = await client.dynamicClientRegistration(new URL(BASE), {
    client_name: 'openid-client',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_basic',
  }, undefined, options);
  assert.ok(config.clientMetadata().client_secret, 'no client secret');

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'mcp:read',
    resource: MCP_URL.href,
    state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const { callback } = await browser.authorize(url);
  // openid-client's default for a client with a secret is client_secret_post,
  // whatever the client registered.
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state },
    { resource: MCP_URL.href });
  assert.ok(tokens.access_token && tokens.refresh_token, 'no tokens');
  assert.equal(tokens.scope, 'mcp:read');

  const answer = await fetch(MCP_URL, {
    method: 'POST',
    headers: { Authorization: `Bearer ${tokens.access_token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(answer.status, 200, await answer.text());

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token && refreshed.refresh_token !== tokens.refresh_token, 'the refresh did not rotate');
});

test('Authlib on its defaults: registered for client_secret_post, introspects and revokes with client_secret_basic', async () => {
  // Debian's python3-authlib, under the system's python.
  const python = process.env.E2E_PYTHON ?? '/usr/bin/python3';
  const child = spawn(python, [path.resolve(import.meta.dirname, '..', 'authlib-client.py')], {
    env: { ...process.env, E2E_BASE: BASE, E2E_REDIRECT: REDIRECT },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  assert.ok(!first.done, `Authlib printed no authorization URL:\n${stderr}`);
  const { callback } = await browser.authorize(first.value);
  child.stdin.end(`${callback.href}\n`);
  const last = await lines.next();
  assert.equal(await exited, 0, stderr);
  assert.deepEqual(JSON.parse(last.value), {
    revocation_endpoint_auth_method: 'client_secret_basic',
    scope: 'mcp:read',
    refreshed: true,
    introspect: { status: 200, sent_basic: true, active: true },
    revoke: { status: 200, sent_basic: true },
    refresh_after_revoke: 'invalid_grant',
  });
});

test('openid-client with private_key_jwt: registers its public key, code flow with PKCE, refresh and revocation, each with a fresh assertion', async () => {
  const options = { execute: [client.allowInsecureRequests] };
  const ecdsa = { name: 'ECDSA', namedCurve: 'P-256' };
  const { privateKey, publicKey } = await crypto.subtle.generateKey(ecdsa, false, ['sign', 'verify']);
  const kid = randomUUID();
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', publicKey);
  const jwk = { kty, crv, x, y, kid, alg: 'ES256', use: 'sig' };
  const auth = client.PrivateKeyJwt({ key: privateKey, kid });
  const config = await client.dynamicClientRegistration(new URL(BASE), {
    client_name: 'openid-client with keys',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [jwk] },
  }, auth, options);
  assert.equal(config.clientMetadata().token_endpoint_auth_method, 'private_key_jwt');
  assert.equal(config.clientMetadata().client_secret, undefined, 'a secret for a client with keys');

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'mcp:read', resource: MCP_URL.href, state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const { callback } = await browser.authorize(url);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state },
    { resource: MCP_URL.href });
  assert.ok(tokens.access_token && tokens.refresh_token, 'no tokens');

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token && refreshed.refresh_token !== tokens.refresh_token, 'the refresh did not rotate');
  await client.tokenRevocation(config, refreshed.refresh_token);
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token), (err) => err.error === 'invalid_grant');

  // Another key than the registered one is refused: 401 invalid_client.
  const stranger = client.PrivateKeyJwt({ key: (await crypto.subtle.generateKey(ecdsa, false, ['sign', 'verify'])).privateKey, kid });
  const impostor = new client.Configuration(config.serverMetadata(), config.clientMetadata().client_id, {}, stranger);
  client.allowInsecureRequests(impostor);
  await assert.rejects(client.refreshTokenGrant(impostor, tokens.refresh_token), (err) => err.error === 'invalid_client' && err.status === 401);
});

test('openid-client with DPoP: a public client runs the code flow, refresh and MCP requests, each with a proof; the bound token is refused as Bearer', async () => {
  const options = { execute: [client.allowInsecureRequests] };
  const config = await client.dynamicClientRegistration(new URL(BASE), {
    client_name: 'openid-client with DPoP',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
    dpop_bound_access_tokens: true,
  }, client.None(), options);
  const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'mcp:read', resource: MCP_URL.href, state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const { callback } = await browser.authorize(url);
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state },
    { resource: MCP_URL.href }, { DPoP: dpop });
  assert.equal(tokens.token_type.toLowerCase(), 'dpop');

  const call = (token) => client.fetchProtectedResource(config, token, MCP_URL, 'POST',
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    new Headers({ 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' }), { DPoP: dpop });
  let answer = await call(tokens.access_token);
  assert.equal(answer.status, 200, await answer.text());
  answer = await call(tokens.access_token); // a new proof for each request
  assert.equal(answer.status, 200, await answer.text());

  // The refresh token is bound to the key: another key is refused.
  const stranger = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
  await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: stranger }), (err) => err.error === 'invalid_dpop_proof');
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: dpop });
  assert.equal(refreshed.token_type.toLowerCase(), 'dpop');
  answer = await call(refreshed.access_token);
  assert.equal(answer.status, 200, await answer.text());

  // Stolen and sent as a bearer token, it is refused.
  const bearer = await fetch(MCP_URL, {
    method: 'POST',
    headers: { Authorization: `Bearer ${refreshed.access_token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(bearer.status, 401);
  assert.match(bearer.headers.get('www-authenticate'), /error="invalid_token", error_description="the access token is bound to a DPoP key/);
});

test('openid-client with DPoP and server nonces (dpop_nonce): use_dpop_nonce at the token endpoint and the guard, retried with the nonce given', async () => {
  const options = { execute: [client.allowInsecureRequests] };
  const config = await client.discovery(new URL('http://localhost:9715/tenant'), 'conformance', undefined, client.None(), options);
  const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('PS256'));
  const resource = 'http://localhost:9715/mcp';
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, resource, state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const { callback } = await browser.authorize(url);
  // The first attempt has no nonce: use_dpop_nonce, and openid-client retries.
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }, { resource }, { DPoP: dpop });
  assert.equal(tokens.token_type.toLowerCase(), 'dpop');
  const answer = await client.fetchProtectedResource(config, tokens.access_token, new URL(resource), 'POST',
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    new Headers({ 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' }), { DPoP: dpop });
  assert.equal(answer.status, 200, await answer.text());
  assert.ok(answer.headers.get('dpop-nonce'), 'no DPoP-Nonce with the answer');
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, { resource }, { DPoP: dpop });
  assert.equal(refreshed.token_type.toLowerCase(), 'dpop');

  // A proof without a nonce at the guard: 401 use_dpop_nonce, with one.
  const bare = await fetch(resource, { method: 'POST', headers: { Authorization: `DPoP ${refreshed.access_token}`, DPoP: 'x' } });
  assert.equal(bare.status, 401);
  assert.match(bare.headers.get('www-authenticate'), /DPoP resource_metadata="[^"]+", error="invalid_dpop_proof"/);
});
