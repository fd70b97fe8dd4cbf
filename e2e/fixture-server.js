// Serves a client ID metadata document over https on loopback, for the
// metadata-document scenario. The server reaches it only through the
// oauth2test build's test allowance.
import https from 'node:https';
import fs from 'node:fs';

const port = Number(process.env.FIXTURE_PORT);
const origin = `https://localhost:${port}`;
const redirect = process.env.FIXTURE_REDIRECT;

https.createServer({ key: fs.readFileSync(process.env.FIXTURE_KEY), cert: fs.readFileSync(process.env.FIXTURE_CERT) }, (req, res) => {
  if (req.url !== '/client.json') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=600' });
  res.end(JSON.stringify({
    client_id: `${origin}/client.json`,
    client_name: 'E2E Metadata Client',
    redirect_uris: [redirect],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }));
}).listen(port, '127.0.0.1', () => console.log(`fixture listening on ${port}`));
