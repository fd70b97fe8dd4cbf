// A small MCP server (Streamable HTTP, stateless) for the end-to-end
// tests, built as the SDK's documentation shows: createMcpExpressApp (whose
// JSON body parser inflates gzip, deflate and br bodies, strips a
// byte-order mark and decodes UTF-16 under its charset) on /mcp, and the
// bare transport (which reads the body itself) on /mcp/bare. It trusts the
// identity the oauth2_server guard put in X-User and X-Scopes and knows
// nothing of OAuth: the gateway requires mcp:write for write_note and
// refuses drop_all. Like many SDK-based servers it sends its own CORS
// headers (any origin, Mcp-Session-Id exposed).
import { createHash } from 'node:crypto';
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const port = Number(process.env.MCP_PORT);
const publicURL = process.env.MCP_PUBLIC_URL;

// upstreamUser asks the identity provider who the upstream token the
// gateway passed on belongs to (as an MCP server calling the user's API
// would), and names the token by a hash only.
async function upstreamUser(token) {
  if (!token) return null;
  const resp = await fetch(process.env.OIDC_USERINFO, { headers: { Authorization: `Bearer ${token}` } });
  const info = resp.ok ? await resp.json() : null;
  return { status: resp.status, email: info?.email ?? null, token: createHash('sha256').update(token).digest('hex').slice(0, 12) };
}

function mcpServer(identity, upstreamToken) {
  const server = new McpServer({ name: 'e2e-mcp', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the gateway says is calling' },
    async () => ({ content: [{ type: 'text', text: JSON.stringify({ ...identity, upstream: await upstreamUser(upstreamToken) }) }] }));
  server.registerTool('write_note', { description: 'Needs the mcp:write scope', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text: `saved: ${text}` }] }));
  server.registerTool('drop_all', { description: 'Refused by the gateway to everyone' },
    async () => ({ content: [{ type: 'text', text: 'dropped everything' }] }));
  return server;
}

// serve answers one MCP request with a fresh server (stateless), body as
// parsed by Express or undefined for the transport to read.
async function serve(req, res, body) {
  try {
    const identity = {
      user: req.headers['x-user'] ?? null,
      scopes: (req.headers['x-scopes'] ?? '').split(' ').filter(Boolean),
      authorizationHeader: req.headers.authorization !== undefined,
    };
    const server = mcpServer(identity, req.headers['x-upstream-token']);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => { transport.close(); server.close(); });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  } catch (err) {
    console.error('mcp-server:', err);
    if (!res.headersSent) res.writeHead(500).end();
  }
}

const app = createMcpExpressApp();
app.all('/mcp', (req, res) => serve(req, res, req.body));

http.createServer((req, res) => {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Mcp-Session-Id');
  if (req.url.startsWith('/mcp/bare')) {
    serve(req, res, undefined);
  } else if (req.url.startsWith('/mcp')) {
    app(req, res);
  } else {
    res.writeHead(404).end();
  }
}).listen(port, '127.0.0.1', () => console.log(`mcp-server listening on ${port}`));
