// A small MCP server (Streamable HTTP, stateless) for the end-to-end
// tests. It trusts the identity the oauth2_server guard put in X-User and
// X-Scopes, and asks for mcp:write itself (403 insufficient_scope) before
// running the write_note tool. Like many SDK-based servers it sends its
// own CORS headers (any origin, Mcp-Session-Id exposed).
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const port = Number(process.env.MCP_PORT);
const publicURL = process.env.MCP_PUBLIC_URL;

function readJSON(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => {
      try { resolve(data ? JSON.parse(data) : undefined); } catch (err) { reject(err); }
    });
    req.on('error', reject);
  });
}

function mcpServer(identity) {
  const server = new McpServer({ name: 'e2e-mcp', version: '1.0.0' });
  server.registerTool('whoami', { description: 'Who the gateway says is calling' },
    async () => ({ content: [{ type: 'text', text: JSON.stringify(identity) }] }));
  server.registerTool('write_note', { description: 'Needs the mcp:write scope', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text: `saved: ${text}` }] }));
  return server;
}

http.createServer(async (req, res) => {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Mcp-Session-Id');
  try {
    if (!req.url.startsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    const body = req.method === 'POST' ? await readJSON(req) : undefined;
    const identity = {
      user: req.headers['x-user'] ?? null,
      scopes: (req.headers['x-scopes'] ?? '').split(' ').filter(Boolean),
      authorizationHeader: req.headers.authorization !== undefined,
    };
    const calls = Array.isArray(body) ? body : [body];
    if (calls.some((m) => m?.method === 'tools/call' && m.params?.name === 'write_note') && !identity.scopes.includes('mcp:write')) {
      res.writeHead(403, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Bearer resource_metadata="${publicURL}/.well-known/oauth-protected-resource/mcp", ` +
          'scope="mcp:read mcp:write", error="insufficient_scope", error_description="write_note needs mcp:write"',
      });
      res.end(JSON.stringify({ error: 'insufficient_scope' }));
      return;
    }
    const server = mcpServer(identity);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => { transport.close(); server.close(); });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  } catch (err) {
    console.error('mcp-server:', err);
    if (!res.headersSent) res.writeHead(500).end();
  }
}).listen(port, '127.0.0.1', () => console.log(`mcp-server listening on ${port}`));
