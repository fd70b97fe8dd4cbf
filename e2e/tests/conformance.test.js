// The official MCP conformance suite (@modelcontextprotocol/conformance,
// its authorization-server scenarios) against this server: a root issuer
// and a path issuer, each with a pre-registered loopback client and with a
// client-ID-metadata-document client. The suite prints an authorization
// URL and waits for the browser at http://127.0.0.1:9712/callback; headless
// Chromium signs in and consents there, as a person would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BASE, REDIRECT, Browser } from './harness.js';

const e2e = path.resolve(import.meta.dirname, '..');
// The suite needs Node 22; npm installs it as the `node` package.
const NODE22 = path.join(e2e, 'node_modules', 'node', 'bin', 'node');
const SUITE = path.join(e2e, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const PATH_ISSUER = 'http://localhost:9715/tenant';
const CIMD = process.env.E2E_CIMD_URL;

let browser;
before(async () => { browser = await Browser.launch(); });
after(async () => { await browser?.close(); });

// conformance runs every authorization-server scenario of the suite for one
// issuer and client, drives the sign-in and consent, and returns the exit
// code, the output and the checks the suite wrote.
async function conformance({ issuer, resource, clientId }) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'conformance-'));
  const args = [SUITE, 'authorization', '--url', issuer, '--client-id', clientId, '--resource', resource,
    '--port', new URL(REDIRECT).port, '--output-dir', out];
  const child = spawn(NODE22, args, { cwd: e2e, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let authorized;
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const onData = (chunk) => {
    output += chunk;
    const m = !authorized && output.match(/^(http\S+\/oauth\/authorize\?\S+)$/m);
    if (m) authorized = browser.authorize(m[1]).catch((error) => { child.kill(); return { error }; });
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', (chunk) => { output += chunk; });
  const timer = setTimeout(() => child.kill(), 120_000);
  const code = await exited;
  clearTimeout(timer);
  assert.ok(authorized, `the suite printed no authorization URL:\n${output}`);
  const { callback, error } = await authorized;
  if (error) throw new Error(`${error.message}; the suite said:\n${output}`);
  const checks = [];
  for (const file of fs.readdirSync(out, { recursive: true })) {
    if (file.endsWith('checks.json')) checks.push(...JSON.parse(fs.readFileSync(path.join(out, file), 'utf8')));
  }
  fs.rmSync(out, { recursive: true, force: true });
  return { code, output, checks, callback };
}

const cases = [
  { name: 'root issuer, pre-registered loopback client', issuer: BASE, resource: `${BASE}/mcp`, clientId: 'conformance' },
  { name: 'root issuer, client ID metadata document', issuer: BASE, resource: `${BASE}/mcp`, clientId: CIMD },
  { name: 'path issuer, pre-registered loopback client', issuer: PATH_ISSUER, resource: 'http://localhost:9715/mcp', clientId: 'conformance' },
  { name: 'path issuer, client ID metadata document', issuer: PATH_ISSUER, resource: 'http://localhost:9715/mcp', clientId: CIMD },
];

for (const c of cases) {
  test(`MCP conformance suite, authorization server: ${c.name}`, async () => {
    assert.ok(c.clientId, 'E2E_CIMD_URL is not set');
    const { code, output, checks, callback } = await conformance(c);
    const failed = checks.filter((k) => k.status !== 'SUCCESS');
    assert.deepEqual(failed, [], `checks that did not succeed:\n${output}`);
    assert.deepEqual(checks.map((k) => k.id).sort(),
      ['authorization-code-grant', 'authorization-server-metadata', 'authorization-server-metadata-cimd'], output);
    assert.equal(code, 0, `the suite exited ${code}:\n${output}`);
    assert.equal(callback.searchParams.get('iss'), c.issuer);
  });
}
