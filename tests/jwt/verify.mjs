// Verifies an access token as a service using jose (npm `jose`, pinned in
// package.json) would, configured by nothing but the issuer URL: OpenID
// Connect Discovery gives the JWKS URI and the algorithms, jose's remote
// JWK Set fetches the keys, and jwtVerify checks the signature, `iss`,
// `aud` and `exp`. Independent of the Worker's Rust code.
// Usage: node tests/jwt/verify.mjs <issuer> <audience> <token>
// Prints {"header":..., "payload":...}, or exits 1 with jose's error code.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [issuer, audience, token] = process.argv.slice(2);
const discovery = new URL(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
const config = await (await fetch(discovery)).json();
if (config.issuer !== issuer) {
  console.error(`discovery names issuer ${config.issuer}, not ${issuer}`);
  process.exit(1);
}
const keys = createRemoteJWKSet(new URL(config.jwks_uri));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer: config.issuer,
    audience,
    algorithms: config.id_token_signing_alg_values_supported,
  });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (e) {
  console.error(e.code ?? e.message);
  process.exit(1);
}
