// SMART Backend Services token endpoint (client_credentials + private_key_jwt)
// for the fhir plugin tests, with node's crypto only.  Used by server.js
// (--smart-public-key FILE --client-id ID); also a small CLI:
//
//   node tests/fhir/token.js mint --key PRIVATE.pem --alg RS384|ES384
//        --client-id ID --aud TOKEN_URL [--kid KID] [--exp-in SECONDS(300)]
//        [--iss ID] [--sub ID] [--jti JTI]
//     prints a signed client assertion JWT (negative tests: --exp-in -10,
//     --exp-in 3600, --iss other, a wrong --key, a reused --jti).
//   node tests/fhir/token.js keygen --alg RS384|ES384 --out-private P.pem --out-public Q.pem
//     writes a key pair (RSA 2048 or EC P-384), PEM (PKCS#8 / SPKI).
//
// Module:
//   const { TokenService, mintAssertion } = require('./token');
//   const ts = new TokenService({ publicKeys: [pem or JWKS text...], clientId, ttl: 300, scopes });
//   ts.handleToken(formBody /* URLSearchParams */, tokenUrl)
//       -> { status, body }   // 200 {access_token, token_type:'bearer', expires_in, scope}
//                             // 400/401 {error, error_description}
//   ts.checkBearer(authorizationHeader) -> null if valid, else a reason string
//
// Checks: grant_type=client_credentials; client_assertion_type =
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer; JWT alg RS384 or
// ES384 and a signature that verifies with a configured public key (matching
// kid when the key has one); iss = sub = client_id (and client_id = the
// configured one); aud = the token URL; exp a number, not past, at most
// now + 300 s (+5 s skew); jti present and never seen before; scope present.
'use strict';

const crypto = require('crypto');
const fs = require('fs');

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

function b64url(buf) { return Buffer.from(buf).toString('base64url'); }

function loadPublicKeys(texts) {
  const keys = [];
  for (const text of texts) {
    const t = String(text).trim();
    if (t.startsWith('{')) {
      const j = JSON.parse(t);
      for (const jwk of j.keys ?? [j]) keys.push({ kid: jwk.kid, key: crypto.createPublicKey({ key: jwk, format: 'jwk' }) });
    } else {
      const pems = t.match(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g) ?? [];
      for (const pem of pems) keys.push({ kid: undefined, key: crypto.createPublicKey(pem) });
    }
  }
  return keys;
}

function keyAlgOk(key, alg) {
  if (alg === 'RS384') return key.asymmetricKeyType === 'rsa';
  if (alg === 'ES384') return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1';
  return false;
}

function verifySig(alg, key, data, sig) {
  if (alg === 'RS384') return crypto.verify('sha384', data, { key, padding: crypto.constants.RSA_PKCS1_PADDING }, sig);
  if (alg === 'ES384') return crypto.verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
  return false;
}

function mintAssertion({ privateKey, alg, clientId, aud, kid, expIn = 300, iss, sub, jti, now }) {
  const key = typeof privateKey === 'string' || Buffer.isBuffer(privateKey) ? crypto.createPrivateKey(privateKey) : privateKey;
  const t = Math.floor((now ?? Date.now()) / 1000);
  const header = { alg, typ: 'JWT' };
  if (kid) header.kid = kid;
  const claims = { iss: iss ?? clientId, sub: sub ?? clientId, aud, exp: t + Number(expIn), jti: jti ?? crypto.randomUUID() };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  let sig;
  if (alg === 'RS384') sig = crypto.sign('sha384', Buffer.from(input), { key, padding: crypto.constants.RSA_PKCS1_PADDING });
  else if (alg === 'ES384') sig = crypto.sign('sha384', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else throw new Error(`unsupported alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}

class TokenService {
  constructor({ publicKeys, clientId, ttl = 300, scopes }) {
    this.keys = loadPublicKeys(publicKeys);
    if (!this.keys.length) throw new Error('token.js: no public key');
    this.clientId = clientId;
    this.ttl = ttl;
    this.scopes = scopes ? new Set(scopes.split(/\s+/).filter(Boolean)) : null;
    this.jtis = new Set();
    this.tokens = new Map(); // token -> expiry ms
    this.issued = 0;
  }

  handleToken(form, tokenUrl) {
    const err = (status, error, desc) => ({ status, body: { error, error_description: desc } });
    const grant = form.get('grant_type');
    if (!grant) return err(400, 'invalid_request', 'missing grant_type');
    if (grant !== 'client_credentials') return err(400, 'unsupported_grant_type', `grant_type must be client_credentials, not ${grant}`);
    if (form.get('client_assertion_type') !== ASSERTION_TYPE) return err(400, 'invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
    const jwt = form.get('client_assertion');
    if (!jwt) return err(400, 'invalid_request', 'missing client_assertion');
    const scope = form.get('scope');
    if (!scope) return err(400, 'invalid_request', 'missing scope');
    const parts = jwt.split('.');
    if (parts.length !== 3) return err(400, 'invalid_request', 'client_assertion is not a compact JWS');
    let header;
    let claims;
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    } catch {
      return err(400, 'invalid_request', 'client_assertion header or claims are not JSON');
    }
    if (header.alg !== 'RS384' && header.alg !== 'ES384') return err(401, 'invalid_client', `unsupported JWT alg ${header.alg} (RS384 or ES384)`);
    const data = Buffer.from(`${parts[0]}.${parts[1]}`);
    const sig = Buffer.from(parts[2], 'base64url');
    const candidates = this.keys.filter((k) => keyAlgOk(k.key, header.alg) && (!header.kid || !k.kid || k.kid === header.kid));
    if (!candidates.length) return err(401, 'invalid_client', `no registered ${header.alg} key${header.kid ? ` with kid ${header.kid}` : ''}`);
    if (!candidates.some((k) => verifySig(header.alg, k.key, data, sig))) return err(401, 'invalid_client', 'client_assertion signature does not verify with the registered public key');
    if (claims.iss !== claims.sub) return err(401, 'invalid_client', 'client_assertion iss and sub differ');
    if (claims.iss !== this.clientId) return err(401, 'invalid_client', `unknown client_id ${claims.iss}`);
    const fc = form.get('client_id');
    if (fc && fc !== claims.iss) return err(401, 'invalid_client', 'client_id differs from the assertion iss');
    const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!auds.includes(tokenUrl)) return err(400, 'invalid_grant', `client_assertion aud must be the token URL ${tokenUrl}`);
    const now = Date.now() / 1000;
    if (typeof claims.exp !== 'number') return err(400, 'invalid_grant', 'client_assertion has no numeric exp');
    if (claims.exp <= now) return err(400, 'invalid_grant', 'client_assertion expired (exp is past)');
    if (claims.exp > now + 300 + 5) return err(400, 'invalid_grant', 'client_assertion exp is more than 5 minutes ahead');
    if (!claims.jti) return err(400, 'invalid_grant', 'client_assertion has no jti');
    if (this.jtis.has(claims.jti)) return err(400, 'invalid_grant', 'client_assertion jti was already used (replay)');
    this.jtis.add(claims.jti);
    let granted = scope.split(/\s+/).filter(Boolean);
    if (this.scopes) {
      granted = granted.filter((s) => this.scopes.has(s));
      if (!granted.length) return err(400, 'invalid_scope', `none of the requested scopes is allowed: ${scope}`);
    }
    const token = crypto.randomBytes(24).toString('hex');
    this.tokens.set(token, Date.now() + this.ttl * 1000);
    this.issued++;
    return { status: 200, body: { access_token: token, token_type: 'bearer', expires_in: this.ttl, scope: granted.join(' ') } };
  }

  checkBearer(auth) {
    if (!auth) return 'no Authorization header';
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m) return 'Authorization is not a Bearer token';
    const exp = this.tokens.get(m[1]);
    if (exp === undefined) return 'unknown access token';
    if (exp <= Date.now()) return 'access token expired';
    return null;
  }
}

function cli(argv) {
  const cmd = argv[2];
  const a = {};
  for (let i = 3; i < argv.length; i += 2) a[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (cmd === 'mint') {
    if (!a.key || !a.alg || !a['client-id'] || !a.aud) throw new Error('usage: token.js mint --key PEM --alg RS384|ES384 --client-id ID --aud URL [--kid K] [--exp-in S] [--iss I] [--sub S] [--jti J]');
    process.stdout.write(mintAssertion({ privateKey: fs.readFileSync(a.key), alg: a.alg, clientId: a['client-id'], aud: a.aud, kid: a.kid,
      expIn: a['exp-in'] ?? 300, iss: a.iss, sub: a.sub, jti: a.jti }) + '\n');
  } else if (cmd === 'keygen') {
    if (!a.alg || !a['out-private'] || !a['out-public']) throw new Error('usage: token.js keygen --alg RS384|ES384 --out-private P.pem --out-public Q.pem');
    const kp = a.alg === 'ES384'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    fs.writeFileSync(a['out-private'], kp.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(a['out-public'], kp.publicKey.export({ type: 'spki', format: 'pem' }));
  } else {
    throw new Error('usage: token.js mint ... | token.js keygen ...');
  }
}

if (require.main === module) {
  try { cli(process.argv); } catch (e) { process.stderr.write(`${e.message}\n`); process.exit(2); }
}

module.exports = { TokenService, mintAssertion, loadPublicKeys, ASSERTION_TYPE };
