// End-to-end scenarios: the MCP TypeScript SDK's OAuth client, headless
// Chromium for sign-in and consent, and a real MCP server behind Caddy's
// oauth2_server guard. Run by e2e/run, which starts everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ARTIFACTS, BASE, MCP_URL, REDIRECT, MemoryProvider, Browser, callbacks, newClient } from './harness.js';

let browser;
before(async () => { await callbacks.start(); browser = await Browser.launch(); });
after(async () => { await browser?.close(); await callbacks.stop(); });

// connect runs the SDK's connection, completing an authorization in the
// browser when the SDK asks for one, and returns the connected client.
async function connect(provider, { decision = 'allow', ...options } = {}) {
  let { client, transport } = newClient(provider);
  try {
    await client.connect(transport);
    return client;
  } catch (err) {
    assert.ok(err instanceof UnauthorizedError, `connect failed with ${err}, want UnauthorizedError (an authorization to run)`);
  }
  assert.ok(provider.authorizationUrl, 'the SDK asked for no authorization');
  const { callback, consentText } = await browser.authorize(provider.authorizationUrl, { decision, ...options });
  provider.lastConsent = consentText;
  if (decision === 'deny') return callback;
  const code = callback.searchParams.get('code');
  assert.ok(code, `the callback carries no code: ${callback}`);
  assert.equal(callback.searchParams.get('iss'), BASE, 'the callback carries the issuer (RFC 9207)');
  await transport.finishAuth(code);
  ({ client, transport } = newClient(provider));
  await client.connect(transport);
  return client;
}

async function whoami(client) {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return JSON.parse(result.content[0].text);
}

const main = new MemoryProvider({ name: 'E2E Main Client' });
let mainClient;

test('MCP client, first connection: 401, discovery, registration, sign-in, consent, tools', async () => {
  mainClient = await connect(main, { shots: 'first-connection' });
  assert.ok(main.clientInformation()?.client_id, 'the client registered dynamically');
  assert.equal(main.clientInformation().client_secret, undefined, 'a none client got a secret');
  const url = main.authorizationUrl;
  assert.equal(url.origin + url.pathname, `${BASE}/oauth/authorize`);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('resource'), MCP_URL.href);
  assert.match(main.lastConsent, /E2E Main Client/, 'the consent page names the client');
  assert.match(main.lastConsent, /127\.0\.0\.1:9712/, 'the consent page shows the redirect host');
  assert.match(main.lastConsent, /mcp:read/, 'the consent page lists the scopes');
  assert.match(main.lastConsent, /Read your notes/, 'the consent page shows the scope description');

  const tools = await mainClient.listTools();
  assert.deepEqual(tools.tools.map((t) => t.name).sort(), ['drop_all', 'whoami', 'write_note']);
  const me = await whoami(mainClient);
  assert.equal(me.user, 'alice', 'whoami returns the signed-in user');
  assert.equal(me.authorizationHeader, false, 'the guard passed the Authorization header upstream');
  assert.deepEqual(me.scopes, ['mcp:read']);
});

test('refresh: the client keeps working across token expiry, even with a burst of parallel calls', async () => {
  const before = main.savedTokens.length;
  const authorizationUrl = main.authorizationUrl;
  await new Promise((r) => setTimeout(r, 5500)); // access_token_lifetime 4s + clock_skew 1s
  const results = await Promise.all(Array.from({ length: 6 }, () => whoami(mainClient)));
  for (const me of results) assert.equal(me.user, 'alice');
  assert.ok(main.savedTokens.length > before, 'no refresh happened');
  assert.equal(main.authorizationUrl, authorizationUrl, 'the client was sent to authorize again: logged out by the burst');
  assert.equal((await whoami(mainClient)).user, 'alice');
});

test('revocation: after revoking the refresh token the next call needs a new authorization', async () => {
  const refreshToken = main.tokens().refresh_token;
  const resp = await fetch(`${BASE}/oauth/revoke`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token', client_id: main.clientInformation().client_id }),
  });
  assert.equal(resp.status, 200);
  const previous = main.authorizationUrl;
  await assert.rejects(whoami(mainClient), (err) => err instanceof UnauthorizedError,
    'the call after revocation did not fail with UnauthorizedError');
  assert.notEqual(main.authorizationUrl, previous, 'the SDK did not start a new authorization');
});

test('scope step-up: a read-only token meets the gateway\'s 403 insufficient_scope for write_note, the SDK re-authorizes with mcp:write', async () => {
  // A client without refresh tokens: SDK 1.32 answers insufficient_scope
  // by refreshing when it has a refresh token, which cannot widen the
  // scope; without one it starts a new authorization for the wider scope.
  const provider = new MemoryProvider({ name: 'E2E Step-up Client', grantTypes: ['authorization_code'] });
  const client = await connect(provider);
  assert.deepEqual((await whoami(client)).scopes, ['mcp:read']);
  assert.equal(provider.tokens().refresh_token, undefined);

  const firstURL = provider.authorizationUrl;
  await assert.rejects(client.callTool({ name: 'write_note', arguments: { text: 'hi' } }),
    (err) => err instanceof UnauthorizedError, 'write_note with a read-only token did not ask for authorization');
  assert.notEqual(provider.authorizationUrl, firstURL);
  assert.equal(provider.authorizationUrl.searchParams.get('scope'), 'mcp:read mcp:write', 'the SDK did not ask for the wider scope');

  const { callback, consentText } = await browser.authorize(provider.authorizationUrl);
  assert.match(consentText, /mcp:write/);
  assert.match(consentText, /Create and delete notes/);
  const { transport } = newClient(provider);
  await transport.finishAuth(callback.searchParams.get('code'));
  const result = await client.callTool({ name: 'write_note', arguments: { text: 'hi' } });
  assert.equal(result.content[0].text, 'saved: hi');

  // A tool outside allow_tools is refused whatever the scopes, with a
  // JSON-RPC error naming it; the client is not sent to authorize again.
  const authorizations = provider.authorizationUrl;
  await assert.rejects(client.callTool({ name: 'drop_all', arguments: {} }),
    (err) => err.code === 403 && err.message.includes('"message":"tool \\"drop_all\\" is not allowed through this gateway"'),
    'drop_all was not refused by the gateway');
  assert.equal(provider.authorizationUrl, authorizations);
  assert.equal((await whoami(client)).user, 'alice', 'the client works after the refusal');
});

// encodedBodies are the ways to send tools/call drop_all that the SDK's
// Express app decodes (and its bare transport, for the byte-order mark).
function encodedBodies(tool) {
  const json = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: { text: 'x' } } });
  const le = (s) => Buffer.from(s, 'utf16le');
  const be = (s) => le(s).swap16();
  return [
    ['gzip', '/mcp', zlib.gzipSync(json), { 'Content-Encoding': 'gzip' }, 415],
    ['deflate', '/mcp', zlib.deflateSync(json), { 'Content-Encoding': 'deflate' }, 415],
    ['br', '/mcp', zlib.brotliCompressSync(json), { 'Content-Encoding': 'br' }, 415],
    ['UTF-8 BOM', '/mcp', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]), {}, 400],
    ['UTF-8 BOM, bare transport', '/mcp/bare', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]), {}, 400],
    ['UTF-16LE, charset', '/mcp', le(json), { 'Content-Type': 'application/json; charset=utf-16le' }, 415],
    ['UTF-16BE, charset', '/mcp', be(json), { 'Content-Type': 'application/json; charset=utf-16be' }, 415],
    ['UTF-16LE with BOM, charset', '/mcp', le('\ufeff' + json), { 'Content-Type': 'application/json; charset=utf-16' }, 415],
    ['UTF-16BE with BOM, charset', '/mcp', be('\ufeff' + json), { 'Content-Type': 'application/json; charset=utf-16' }, 415],
  ];
}

async function post(url, body, headers) {
  const resp = await fetch(url, {
    method: 'POST', body,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
  });
  return { status: resp.status, text: await resp.text() };
}

test('gateway: bodies the SDK server would inflate or re-decode are refused with a read-only token, never run', async () => {
  // The premise: sent to the SDK server directly, each of them runs
  // drop_all (the gateway refuses it to everyone) and write_note (which
  // needs mcp:write).
  const upstream = 'http://127.0.0.1:9711';
  for (const tool of ['drop_all', 'write_note']) {
    for (const [name, path, body, headers] of encodedBodies(tool)) {
      const direct = await post(upstream + path, body, headers);
      assert.match(direct.text, /dropped everything|saved: x/, `${name}: the SDK server did not run ${tool} (${direct.status} ${direct.text.slice(0, 200)})`);
    }
  }
  const provider = new MemoryProvider({ name: 'E2E Gateway Client', grantTypes: ['authorization_code'] });
  const client = await connect(provider);
  assert.deepEqual((await whoami(client)).scopes, ['mcp:read']);
  const token = provider.tokens().access_token;
  for (const tool of ['drop_all', 'write_note']) {
    for (const [name, path, body, headers, status] of encodedBodies(tool)) {
      const viaGateway = await post(new URL(path, BASE).href, body, { ...headers, Authorization: `Bearer ${token}` });
      assert.equal(viaGateway.status, status, `${name}, ${tool}: ${viaGateway.text}`);
      assert.doesNotMatch(viaGateway.text, /dropped everything|saved:/, `${name}: ${tool} ran through the gateway`);
      assert.equal(JSON.parse(viaGateway.text).jsonrpc, '2.0', `${name}: the refusal is not a JSON-RPC error`);
    }
  }
});

test('denied consent: Deny surfaces access_denied to the client', async () => {
  const provider = new MemoryProvider({ name: 'E2E Denied Client' });
  const callback = await connect(provider, { decision: 'deny' });
  assert.equal(callback.searchParams.get('error'), 'access_denied');
  assert.equal(callback.searchParams.get('iss'), BASE);
  assert.equal(callback.searchParams.get('code'), null);
  assert.ok(callback.searchParams.get('state'), 'the state was not echoed');
});

test('client ID metadata document: the client presents an https URL as its client_id', async () => {
  const docURL = process.env.E2E_CIMD_URL;
  assert.ok(docURL, 'E2E_CIMD_URL is not set');
  const provider = new MemoryProvider({ name: 'unused', clientMetadataUrl: docURL });
  const client = await connect(provider);
  assert.equal(provider.clientInformation().client_id, docURL, 'the SDK registered instead of using the document URL');
  assert.match(provider.lastConsent, /E2E Metadata Client/);
  assert.match(provider.lastConsent, new RegExp(new URL(docURL).host.replace(/[.]/g, '\\.')), 'the consent page does not show the document host');
  assert.equal((await whoami(client)).user, 'alice');
});

test('browser checks: keyboard-only sign-in and consent, titles, labels, no console errors, screenshots', async () => {
  const context = await browser.browser.newContext(); // signed out
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
  page.on('pageerror', (err) => errors.push(err.message));

  // Register a client by hand so this test controls the request.
  const reg = await (await fetch(`${BASE}/oauth/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ client_name: 'Keyboard Client', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' }),
  })).json();
  callbacks.take();
  const authURL = new URL(`${BASE}/oauth/authorize`);
  authURL.search = new URLSearchParams({
    response_type: 'code', client_id: reg.client_id, redirect_uri: REDIRECT, state: 'kb',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', scope: 'mcp:read',
  }).toString();
  await page.goto(authURL.href);

  assert.equal(await page.title(), 'Sign in');
  assert.equal(await page.locator('label[for=username]').count(), 1);
  assert.equal(await page.locator('label[for=password]').count(), 1);
  await page.screenshot({ path: `${ARTIFACTS}/login.png`, fullPage: true });
  // The user name field has focus; type, Tab, type, Enter.
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  await page.keyboard.type('e2e-password');
  await page.keyboard.press('Enter');
  await page.waitForSelector('button[name=decision]');
  assert.match(await page.title(), /Allow Keyboard Client\?/);
  const text = await page.locator('main').innerText();
  assert.match(text, /Keyboard Client/);
  assert.match(text, /127\.0\.0\.1:9712/);
  assert.match(text, /mcp:read/);
  await page.screenshot({ path: `${ARTIFACTS}/consent.png`, fullPage: true });
  // Tab to Deny, then to Allow, and press Enter.
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.value), 'allow', 'Tab does not reach the Allow button');
  await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.keyboard.press('Enter')]);
  const callback = callbacks.take();
  assert.ok(callback?.searchParams.get('code'), 'keyboard consent did not return a code');

  assert.deepEqual(errors, [], `console errors on the login and consent pages: ${errors}`);

  // The error page: its own 400 status is the only thing Chromium reports.
  await page.goto(`${BASE}/oauth/authorize?client_id=nobody`);
  assert.ok((await page.title()).length > 0);
  await page.screenshot({ path: `${ARTIFACTS}/error.png`, fullPage: true });
  assert.ok(errors.every((e) => e.includes('status of 400')), `console errors on the error page: ${errors}`);

  await context.close();
  assert.deepEqual(browser.consoleErrors, [], 'console errors during the flows');
});

test('browser-hosted client on another origin: fetch to the guarded MCP endpoint reads the answer of a CORS-sending upstream', async () => {
  const provider = new MemoryProvider({ name: 'E2E Browser App' });
  await connect(provider);
  const token = provider.tokens().access_token;
  const page = await browser.page();
  await page.goto(new URL('/app', REDIRECT).href);
  const result = await page.evaluate(async ({ url, token }) => {
    const call = (headers) => fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'page', version: '1' } } }),
    });
    // With a token, and a tool parameter mirrored into a header (so the
    // browser sends a preflight asking for it).
    const ok = await call({ Authorization: `Bearer ${token}`, 'Mcp-Param-City': 'Zurich' });
    const body = await ok.text();
    const anonymous = await call({});
    return { status: ok.status, body, challengeStatus: anonymous.status, challenge: anonymous.headers.get('www-authenticate') };
  }, { url: MCP_URL.href, token });
  await page.close();
  assert.equal(result.status, 200, `the proxied answer: ${result.status} ${result.body}`);
  assert.match(result.body, /e2e-mcp/, 'the page could not read the MCP server\'s answer');
  assert.equal(result.challengeStatus, 401);
  assert.match(result.challenge ?? '', /^Bearer resource_metadata="/, 'the page cannot read the challenge');
  assert.deepEqual(browser.consoleErrors.filter((e) => !e.includes('401')), [], 'console errors on the app page');
});

test('browser-hosted client (the MCP Inspector\'s direct mode): refreshes after expiry with the SDK\'s merged headers, from another origin', async () => {
  const provider = new MemoryProvider({ name: 'E2E Browser Refresh' });
  await connect(provider);
  const { access_token: expired, refresh_token: refreshToken } = provider.tokens();
  await new Promise((r) => setTimeout(r, 5500)); // access_token_lifetime 4s + clock_skew 1s
  const page = await browser.page();
  await page.goto(new URL('/app', REDIRECT).href);
  const result = await page.evaluate(async ({ base, mcp, expired, refreshToken, clientId }) => {
    // What the SDK in a browser sends: its transport's headers merged into
    // the OAuth request, the expired access token included.
    const refresh = await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json, application/x-www-form-urlencoded',
        Accept: 'text/event-stream, application/json, application/json',
        Authorization: `Bearer ${expired}`,
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }).toString(),
    });
    const tokens = await refresh.json();
    const call = await fetch(mcp, {
      method: 'POST',
      headers: { Authorization: `Bearer ${tokens.access_token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    return { refreshStatus: refresh.status, tokens, callStatus: call.status };
  }, { base: BASE, mcp: MCP_URL.href, expired, refreshToken, clientId: provider.clientInformation().client_id });
  await page.close();
  assert.equal(result.refreshStatus, 200, `the refresh: ${JSON.stringify(result.tokens)}`);
  assert.ok(result.tokens.access_token && result.tokens.refresh_token !== refreshToken, 'no new tokens');
  assert.equal(result.callStatus, 200, 'the refreshed token does not reach the MCP server');
  assert.deepEqual(browser.consoleErrors.filter((e) => !e.includes('401')), [], 'console errors on the app page');
});

// Sign-in through the upstream identity provider, e2e/oidc-provider.js
// (panva's certified oidc-provider), configured twice in e2e/Caddyfile as
// `login oidc corp` (allow_domains example.com) and `login oidc partner`.
let ssoContext;

test('identity provider: first connection signs in at the upstream OpenID provider, then consents here', async () => {
  ssoContext = await browser.browser.newContext();
  const provider = new MemoryProvider({ name: 'E2E SSO Client' });
  const client = await connect(provider, { context: ssoContext, via: 'Corp SSO', account: 'alice@example.com', shots: 'sso' });
  assert.match(provider.lastConsent, /alice@example\.com via Corp SSO/, 'the consent page does not name the account and provider');
  const me = await whoami(client);
  assert.equal(me.user, 'corp:alice@example.com', 'sub is <provider name>:<provider sub>');
  assert.deepEqual(browser.consoleErrors, [], 'console errors on our pages');

  // pass_upstream_token: the MCP server calls the provider as the user
  // with the token the gateway passed on, and keeps doing so after the
  // guard refreshed it (the provider's access tokens live 6 s; the guard
  // refreshes a quarter of their lifetime before expiry).
  assert.deepEqual([me.upstream?.status, me.upstream?.email], [200, 'alice@example.com'], `the provider's userinfo with the upstream token: ${JSON.stringify(me.upstream)}`);
  await new Promise((r) => setTimeout(r, 5500));
  const later = await whoami(client);
  assert.deepEqual([later.upstream?.status, later.upstream?.email], [200, 'alice@example.com'], `after the refresh: ${JSON.stringify(later.upstream)}`);
  assert.notEqual(later.upstream.token, me.upstream.token, 'the guard did not refresh the upstream token');
  assert.equal((await whoami(client)).upstream.token, later.upstream.token, 'the refreshed token is kept, not refreshed again');
});

test('identity provider: an account outside allow_domains is refused with our page, and the client gets access_denied', async () => {
  const context = await browser.browser.newContext();
  const provider = new MemoryProvider({ name: 'E2E Refused Client' });
  const { client, transport } = newClient(provider);
  await assert.rejects(client.connect(transport), (err) => err instanceof UnauthorizedError);
  const { callback, refusal } = await browser.authorize(provider.authorizationUrl,
    { context, via: 'Corp SSO', account: 'mallory@elsewhere.test', shots: 'sso-outsider' });
  assert.match(refusal ?? '', /This account is not allowed to sign in here\./);
  assert.equal(callback.searchParams.get('error'), 'access_denied');
  assert.equal(callback.searchParams.get('iss'), BASE);
  assert.ok(callback.searchParams.get('state'), 'the state was not echoed');
  await context.close();
});

test('sign-in page with two providers and a password form: buttons, labels, keyboard only, no console errors, screenshot', async () => {
  const context = await browser.browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error' && page.url().startsWith(BASE)) errors.push(msg.text()); });
  const reg = await (await fetch(`${BASE}/oauth/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ client_name: 'Two Providers Client', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' }),
  })).json();
  const authURL = new URL(`${BASE}/oauth/authorize`);
  authURL.search = new URLSearchParams({
    response_type: 'code', client_id: reg.client_id, redirect_uri: REDIRECT, state: 'two',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', scope: 'mcp:read',
  }).toString();
  await page.goto(authURL.href);
  assert.equal(await page.title(), 'Sign in');
  assert.equal(await page.getByRole('link', { name: 'Continue with Corp SSO' }).count(), 1);
  assert.equal(await page.getByRole('link', { name: 'Continue with Partner SSO' }).count(), 1);
  assert.equal(await page.locator('label[for=username]').count(), 1);
  assert.equal(await page.locator('label[for=password]').count(), 1);
  await page.screenshot({ path: `${ARTIFACTS}/login-two-providers.png`, fullPage: true });
  // The user name field has focus; Shift+Tab reaches the last provider
  // button, and Enter goes to that provider.
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Continue with Partner SSO');
  await Promise.all([page.waitForURL((u) => u.href.startsWith('http://127.0.0.1:9714/')), page.keyboard.press('Enter')]);
  assert.equal(await page.locator('input[name=login]').count(), 1, 'not at the provider\'s sign-in page');
  assert.deepEqual(errors, [], `console errors on the sign-in page: ${errors}`);
  await context.close();
});

test('sign-out, then sign in as another account', async () => {
  const page = await browser.page(ssoContext);
  await page.goto(`${BASE}/oauth/logout`);
  assert.match(await page.locator('main').innerText(), /alice@example\.com via Corp SSO/);
  await page.screenshot({ path: `${ARTIFACTS}/logout.png`, fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.match(await page.locator('main').innerText(), /You are signed out/);
  await page.close();
  // Signing out here does not sign out at the provider, which has its own
  // session; another person at the same browser signs out there too.
  await ssoContext.clearCookies({ domain: '127.0.0.1' });
  const provider = new MemoryProvider({ name: 'E2E SSO Client 2' });
  const client = await connect(provider, { context: ssoContext, via: 'Corp SSO', account: 'bob@example.com' });
  assert.equal((await whoami(client)).user, 'corp:bob@example.com');
  assert.match(provider.lastConsent, /bob@example\.com via Corp SSO/);
  await ssoContext.close();
  // The refusal page's own 403 is the only thing Chromium may report.
  const unexpected = browser.consoleErrors.filter((e) => !e.includes('401') && !(e.includes('/oauth/callback/corp?') && e.includes('status of 403')));
  assert.deepEqual(unexpected, [], 'console errors on our pages');
});

test('connected apps: the user revokes an app in the page, and its next call needs a new authorization', async () => {
  const provider = new MemoryProvider({ name: 'E2E Account Client' });
  const client = await connect(provider);
  assert.equal((await whoami(client)).user, 'alice');
  const page = await browser.page();
  await page.goto(`${BASE}/oauth/account`);
  assert.equal(await page.title(), 'Connected apps');
  const revoke = page.getByRole('button', { name: 'Revoke E2E Account Client' });
  assert.equal(await revoke.count(), 1, 'the app is not listed');
  assert.match(await page.locator('main').innerText(), /127\.0\.0\.1:9712/);
  assert.match(await page.locator('main').innerText(), /Read your notes \(mcp:read\)/, 'the page does not describe the scope');
  await page.screenshot({ path: `${ARTIFACTS}/account.png`, fullPage: true });
  // Keyboard only: focus the app's Revoke button and press Enter.
  await revoke.focus();
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  assert.match(await page.locator('main').innerText(), /The app was revoked/);
  assert.equal(await page.getByRole('button', { name: 'Revoke E2E Account Client' }).count(), 0);
  await page.close();
  const previous = provider.authorizationUrl;
  await assert.rejects(whoami(client), (err) => err instanceof UnauthorizedError, 'the revoked app could still call');
  assert.notEqual(provider.authorizationUrl, previous, 'the SDK did not start a new authorization');
  assert.deepEqual(browser.consoleErrors.filter((e) => !e.includes('401') && !e.includes('status of 403')), [], 'console errors on our pages');
});
