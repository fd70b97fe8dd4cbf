// Shared pieces of the end-to-end tests: an in-memory OAuthClientProvider
// for the MCP SDK, and a headless Chromium that signs in and answers the
// consent screen like a person would.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export const BASE = process.env.E2E_BASE ?? 'http://localhost:9710';
export const MCP_URL = new URL('/mcp', BASE);
export const REDIRECT = process.env.E2E_REDIRECT ?? 'http://127.0.0.1:9712/callback';
export const ARTIFACTS = path.resolve(import.meta.dirname, '..', 'artifacts');
export const USER = 'alice';
export const PASSWORD = 'e2e-password';

// MemoryProvider keeps what an MCP host would persist, in memory.
export class MemoryProvider {
  constructor({ name = 'E2E Client', grantTypes = ['authorization_code', 'refresh_token'], clientMetadataUrl } = {}) {
    this.name = name;
    this.grantTypes = grantTypes;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this.authorizationUrl = undefined;
    this.savedTokens = [];
  }
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return {
      client_name: this.name,
      redirect_uris: [REDIRECT],
      grant_types: this.grantTypes,
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return randomBytes(16).toString('hex'); }
  clientInformation() { return this._client; }
  saveClientInformation(info) { this._client = info; }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; this.savedTokens.push(tokens); }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
  }
}

export function newClient(provider) {
  const transport = new StreamableHTTPClientTransport(MCP_URL, { authProvider: provider });
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  return { client, transport };
}

// callbacks is the client's redirect endpoint, a real HTTP server on
// loopback: the browser lands here after the authorization.
export const callbacks = {
  last: undefined,
  server: undefined,
  async start() {
    const { port, hostname } = new URL(REDIRECT);
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url, REDIRECT);
      if (url.pathname === '/app') {
        // A page of a browser-hosted MCP client, on another origin than
        // the MCP server.
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><link rel="icon" href="data:,"><title>Browser MCP client</title><p>app</p>');
        return;
      }
      if (url.pathname !== new URL(REDIRECT).pathname) {
        res.writeHead(404).end();
        return;
      }
      this.last = url;
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><link rel="icon" href="data:,"><title>Done</title><p>Authorization finished; return to the application.</p>');
    });
    await new Promise((resolve) => this.server.listen(Number(port), hostname, resolve));
  },
  async stop() { this.server?.closeAllConnections(); await new Promise((resolve) => this.server?.close(resolve)); },
  take() { const u = this.last; this.last = undefined; return u; },
};

// Browser is one headless Chromium, with the console errors of its pages.
export class Browser {
  static async launch() {
    const b = new Browser();
    b.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
        '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    b.context = await b.browser.newContext();
    b.consoleErrors = [];
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    return b;
  }

  // page opens a page (in context, or the shared one) whose console errors
  // on this server's pages are recorded; the upstream identity provider's
  // own pages are not ours to judge.
  async page(context = this.context) {
    const page = await context.newPage();
    const ours = () => page.url().startsWith(BASE);
    page.on('console', (msg) => { if (msg.type() === 'error' && ours()) this.consoleErrors.push(`${page.url()}: ${msg.text()}`); });
    page.on('pageerror', (err) => { if (ours()) this.consoleErrors.push(`${page.url()}: ${err.message}`); });
    return page;
  }

  async screenshot(page, name) {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  // authorize opens an authorization URL, signs in when asked (with the
  // password form, or with `via` the identity provider of that label as
  // `account`), answers the consent screen with decision (allow or deny)
  // when it appears, and returns the URL the browser was finally sent to
  // (the client's callback), plus what the consent page said. When this
  // server refuses the account, it returns what the refusal page said,
  // after following its "Back to the application" button.
  async authorize(authorizationUrl, { decision = 'allow', shots, context, via, account } = {}) {
    const page = await this.page(context);
    callbacks.take();
    let callback;
    let consentText;
    let refusal;
    await page.goto(String(authorizationUrl));
    // The callback is served by callbacks, or by whoever else listens on
    // the redirect URI (the conformance suite).
    const arrived = () => callbacks.take() ?? (page.url().startsWith(REDIRECT) ? new URL(page.url()) : undefined);
    for (let step = 0; step < 100 && !(callback = arrived()); step++) {
      const button = page.getByRole('link', { name: `Continue with ${via}` });
      if (via && await button.count()) {
        if (shots) await this.screenshot(page, `${shots}-login`);
        await Promise.all([page.waitForNavigation(), button.click()]);
        continue;
      }
      if (await page.locator('input[name=login]').count()) { // the provider's sign-in page
        await page.fill('input[name=login]', account);
        await page.fill('input[name=password]', 'any password');
        await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
        continue;
      }
      if (await page.locator('input[name=prompt][value=consent]').count()) { // the provider's consent page
        await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
        continue;
      }
      if (await page.getByRole('link', { name: 'Back to the application' }).count()) {
        refusal = await page.locator('main').innerText();
        if (shots) await this.screenshot(page, `${shots}-refused`);
        await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole('link', { name: 'Back to the application' }).click()]);
        continue;
      }
      if (await page.locator('#username').count()) {
        if (shots) await this.screenshot(page, `${shots}-login`);
        await page.fill('#username', USER);
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
        continue;
      }
      if (await page.locator('button[name=decision]').count()) {
        consentText = await page.locator('main').innerText();
        if (shots) await this.screenshot(page, `${shots}-consent`);
        await Promise.all([page.waitForNavigation(), page.click(`button[name=decision][value=${decision}]`)]);
        continue;
      }
      await page.waitForTimeout(50);
    }
    await page.close();
    if (!callback) throw new Error(`the browser never reached the callback (last page ${page.url()})`);
    return { callback, consentText, refusal };
  }

  async close() { await this.browser?.close(); }
}
