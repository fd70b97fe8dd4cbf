// A real OpenID provider for the end-to-end tests: panva's oidc-provider
// (a certified OpenID Connect implementation) with its development login
// and consent pages. Any login with any password signs in; the account's
// e-mail address is the login itself (verified) and its name the part
// before the @. Two clients are registered, one per `login` of
// e2e/Caddyfile, each with its exact callback URL; both may refresh
// (corp asks for offline_access, as pass_upstream_token wants).
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const host = process.env.OIDC_HOST ?? '127.0.0.1';
const callbackBase = process.env.OIDC_CALLBACK_BASE; // e.g. http://localhost:9710/oauth/callback/
const secret = process.env.OIDC_CLIENT_SECRET;

const client = (name) => ({
  client_id: `caddy-${name}`,
  client_secret: secret,
  redirect_uris: [`${callbackBase}${name}`],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(`http://${host}:${port}`, {
  clients: [client('corp'), client('partner')],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  // Short-lived access tokens, so that the guard's refresh (a minute
  // before expiry) happens within the scenario.
  ttl: { AccessToken: 6 },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: true, name: id.split('@')[0] }),
  }),
  pkce: { required: () => true },
  cookies: { keys: ['e2e-only-cookie-signing-key-0123456789'] },
  features: { devInteractions: { enabled: true } },
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
provider.listen(port, host, () => console.log(`oidc-provider listening on http://${host}:${port}`));
