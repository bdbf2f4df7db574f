// A real OpenID Connect provider for the sign-in tests: `oidc-provider` (npm) with its development
// login form, run by Node.js. Started by tests/e2e/oidc_helpers.py:
//
//   node oidc_provider.mjs PORT MODULES_DIR CLIENT_ID CLIENT_SECRET USERS_JSON
//
// MODULES_DIR is the folder whose node_modules holds oidc-provider (a cache outside the repository).
// USERS_JSON maps a login to its claims: {"u-ann": {"email": "ann@example.org", "name": "Ann"}}; the
// login typed into the form is the account's subject (`sub`), so subject and e-mail differ.
// Any password is accepted. Consent is given on the user's behalf (a first-party client). The client
// may use any redirect URI http://127.0.0.1:<port>/oauth2callback (the app's port is picked at random).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const [, , port, modulesDir, clientId, clientSecret, usersJson] = process.argv;
const require = createRequire(`${modulesDir}/package.json`);
const { Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);
const users = JSON.parse(usersJson);

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: ['http://127.0.0.1/oauth2callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // the claims go into the ID token too: Streamlit reads the user from it
  conformIdTokenClaims: false,
  cookies: { keys: ['segloop-e2e-only'] },
  async findAccount(ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: user.email, email_verified: true, name: user.name };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile');
    grant.addOIDCClaims(['email', 'email_verified', 'name']);
    await grant.save();
    return grant;
  },
  features: { devInteractions: { enabled: true } },
});
provider.Client.prototype.redirectUriAllowed = (uri) => /^http:\/\/127\.0\.0\.1:\d+\/oauth2callback$/.test(uri);
provider.Client.prototype.postLogoutRedirectUriAllowed = (uri) => /^http:\/\/127\.0\.0\.1:\d+\//.test(uri);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider ready ${issuer}`);
});
