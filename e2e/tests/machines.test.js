// Machine clients (the MCP client-credentials extension) with the MCP
// TypeScript SDK's own providers: ClientCredentialsProvider with a secret
// and PrivateKeyJwtProvider with a key, both configured in the Caddyfile
// (e2e/Caddyfile: machine and agent). No browser, no user: the SDK meets
// the 401, discovers the authorization server, gets a token with
// client_credentials and calls a tool. Run by e2e/run, which starts
// everything and makes the agent's key pair.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { MCP_URL } from './harness.js';

// whoami connects with provider and calls the whoami tool.
async function whoami(provider) {
  const transport = new StreamableHTTPClientTransport(MCP_URL, { authProvider: provider });
  const mcp = new Client({ name: 'e2e-machine', version: '1.0.0' });
  await mcp.connect(transport);
  try {
    const result = await mcp.callTool({ name: 'whoami', arguments: {} });
    return JSON.parse(result.content[0].text);
  } finally {
    await mcp.close();
  }
}

test('MCP SDK ClientCredentialsProvider: a Caddyfile machine client with a secret calls a tool, with no user', async () => {
  const provider = new ClientCredentialsProvider({ clientId: 'machine', clientSecret: process.env.E2E_MACHINE_SECRET, scope: 'mcp:read' });
  const me = await whoami(provider);
  assert.deepEqual(me.scopes, ['mcp:read']);
  assert.ok(!me.user, `a machine token named a user: ${JSON.stringify(me)}`);
  assert.equal(provider.tokens().token_type.toLowerCase(), 'bearer');
  assert.equal(provider.tokens().refresh_token, undefined, 'client_credentials gave a refresh token');
});

test('MCP SDK PrivateKeyJwtProvider: a Caddyfile client with keys (jwks_file) calls a tool; another key is refused', async () => {
  const privateKey = fs.readFileSync(process.env.E2E_AGENT_KEY, 'utf8');
  const provider = new PrivateKeyJwtProvider({ clientId: 'agent', privateKey, algorithm: 'ES256', scope: 'mcp:read' });
  const me = await whoami(provider);
  assert.deepEqual(me.scopes, ['mcp:read']);
  assert.ok(!me.user, `a machine token named a user: ${JSON.stringify(me)}`);

  const { generateKeyPairSync } = await import('node:crypto');
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
  await assert.rejects(whoami(new PrivateKeyJwtProvider({ clientId: 'agent', privateKey: other, algorithm: 'ES256', scope: 'mcp:read' })),
    /InvalidClientError: client_assertion: the signature does not verify/);
});
