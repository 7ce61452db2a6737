#!/usr/bin/env node
// A phone-book client written from docs/PROTOCOL.md alone, with Node's built-ins only (v18+).
//
//   node tests/interop/client.mjs http://127.0.0.1:3000 [--protocol docs/PROTOCOL.md]
//   node tests/interop/client.mjs --vectors-only
//
// It checks the document's test vectors, then drives a live server through registration,
// lookups (single and batch), the error paths a client can trigger, and unregistration.
// It prints one `ok <check>` line per check and exits 1 on the first mismatch.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Checks

let checks = 0;

function ok(name) {
  checks += 1;
  console.log(`ok ${name}`);
}

function fail(name, why) {
  console.error(`FAIL ${name}: ${why}`);
  process.exit(1);
}

function expect(name, cond, why) {
  if (!cond) fail(name, typeof why === 'function' ? why() : why);
}

function expectEq(name, got, want) {
  if (got !== want) fail(name, `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

// ---------------------------------------------------------------------------------------------
// Encodings (PROTOCOL.md "Encodings")

const b64 = (buf) => Buffer.from(buf).toString('base64'); // standard alphabet, padded

// Strict decoding: standard alphabet, padding, no whitespace, unused bits zero.
function b64decodeStrict(s, len) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    return null;
  }
  const buf = Buffer.from(s, 'base64');
  if (buf.toString('base64') !== s) return null; // non-zero unused bits, misplaced padding
  if (len !== undefined && buf.length !== len) return null;
  return buf;
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest();
// docs/PROTOCOL.md "Lookup ids": HMAC-SHA-256 under a fixed key, unpadded URL-safe base64.
const lookupId = (name) =>
  crypto.createHmac('sha256', 'ffxiv-p2p-phonebook/1 lookup-id key')
    .update(name.toLowerCase(), 'ascii').digest('base64url');

// Ed25519 keys from a raw 32-byte seed: wrap it in the fixed PKCS#8 prefix for Ed25519.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function keyFromSeed(seed) {
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = crypto.createPublicKey(privateKey);
  return { privateKey, publicKey, raw: rawPublic(publicKey) };
}

function newKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  return { privateKey, publicKey, raw: rawPublic(publicKey) };
}

function rawPublic(publicKey) {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

function publicFromRaw(raw) {
  return crypto.createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, raw]),
    format: 'der',
    type: 'spki',
  });
}

const sign = (key, msg) => crypto.sign(null, msg, key.privateKey);

// ---------------------------------------------------------------------------------------------
// Strict verification (PROTOCOL.md: canonical S, no small-order R or key). OpenSSL's Ed25519
// verify checks the equation and S < L but not small order, so that part is done here with
// plain BigInt arithmetic on the curve -x^2 + y^2 = 1 + d x^2 y^2.

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const mod = (a) => ((a % P) + P) % P;

function powmod(b, e) {
  let r = 1n;
  b = mod(b);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}

const inv = (a) => powmod(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = powmod(2n, (P - 1n) / 4n);

function leToBig(buf) {
  let n = 0n;
  for (let i = buf.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(buf[i]);
  return n;
}

// Returns [x, y], or null for a non-canonical encoding or a point not on the curve.
function decompress(enc) {
  const n = leToBig(enc);
  const sign = n >> 255n;
  const y = n & ((1n << 255n) - 1n);
  if (y >= P) return null;
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  const x2 = (u * inv(v)) % P;
  let x = powmod(x2, (P + 3n) / 8n);
  if ((x * x) % P !== x2) x = (x * SQRT_M1) % P;
  if ((x * x) % P !== x2) return null;
  if (x === 0n && sign === 1n) return null;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y];
}

function add([x1, y1], [x2, y2]) {
  const t = (D * x1 * x2 * y1 * y2) % P;
  return [mod((x1 * y2 + y1 * x2) * inv(1n + t)), mod((y1 * y2 + x1 * x2) * inv(1n - t))];
}

function isSmallOrder(pt) {
  let q = pt;
  for (let i = 0; i < 3; i++) q = add(q, q);
  return q[0] === 0n && q[1] === 1n;
}

// Returns null when valid, else the reason.
function verifyStrict(pubRaw, msg, sig) {
  if (pubRaw.length !== 32 || sig.length !== 64) return 'bad length';
  const a = decompress(pubRaw);
  if (!a || isSmallOrder(a)) return 'key not a valid point of large order';
  const r = decompress(sig.subarray(0, 32));
  if (!r || isSmallOrder(r)) return 'R not a valid point of large order';
  if (leToBig(sig.subarray(32)) >= L) return 'S not canonical';
  if (!crypto.verify(null, msg, publicFromRaw(pubRaw), sig)) return 'equation does not hold';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Names and signed messages (PROTOCOL.md "Player names", "Signed messages")

const canonicalName = (name) => name.replace(/[A-Z]/g, (c) => c.toLowerCase());

// "public": SHA-256 of nothing. "friends": SHA-256 over the domain line, the 32-byte salt and
// the friend keys sorted bytewise.
const FRIENDS_DOMAIN = Buffer.from('ffxiv-p2p-phonebook/1 friends\n', 'ascii');
function friendsDigest(visibility, salt, friendKeys) {
  if (visibility === 'public') return sha256(Buffer.alloc(0));
  const sorted = [...friendKeys].sort(Buffer.compare);
  return sha256(Buffer.concat([FRIENDS_DOMAIN, salt, ...sorted]));
}

function registerMessage({ name, keyRaw, port, visibility, digest, timestamp }) {
  return Buffer.from(
    'ffxiv-p2p-phonebook/1 register\n' +
      `name:${canonicalName(name)}\n` +
      `key:${b64(keyRaw)}\n` +
      `port:${port}\n` +
      `visibility:${visibility}\n` +
      `friends:${b64(digest)}\n` +
      `timestamp:${timestamp}\n`,
    'ascii',
  );
}

function unregisterMessage({ name, keyRaw, timestamp }) {
  return Buffer.from(
    'ffxiv-p2p-phonebook/1 unregister\n' +
      `name:${canonicalName(name)}\n` +
      `key:${b64(keyRaw)}\n` +
      `timestamp:${timestamp}\n`,
    'ascii',
  );
}

// ---------------------------------------------------------------------------------------------
// Test vectors, read from the document itself

function readVectors(file) {
  const text = fs.readFileSync(file, 'utf8');
  const m = text.match(/```text test-vectors\n([\s\S]*?)```/);
  if (!m) fail('vectors', `no test-vectors block in ${file}`);
  const v = {};
  for (const line of m[1].split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) v[line.slice(0, i)] = line.slice(i + 2);
  }
  return v;
}

function checkVectors(file) {
  const v = readVectors(file);
  const unescape = (s) => s.replaceAll('\\n', '\n');

  const key = keyFromSeed(Buffer.from(v.seed, 'hex'));
  expectEq('vector publicKey', b64(key.raw), v.publicKey);
  ok('vector publicKey');

  const friend = keyFromSeed(Buffer.alloc(32, 0x42));
  expectEq('vector friendPublicKey', b64(friend.raw), v.friendPublicKey);
  ok('vector friendPublicKey');

  const salt = b64decodeStrict(v.friendsSalt, 32);
  expect('vector friendsSalt', salt !== null, `not base64 of 32 bytes: ${v.friendsSalt}`);
  expectEq('vector friendsSalt', salt.toString('hex'), Buffer.from(Array.from({ length: 32 }, (_, i) => 0x20 + i)).toString('hex'));
  const digest = friendsDigest('friends', salt, [friend.raw]);
  expectEq('vector friendsDigest', b64(digest), v.friendsDigest);
  ok('vector friendsDigest');
  expectEq('vector emptyDigest', b64(friendsDigest('public')), '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
  ok('vector emptyDigest');

  const body = JSON.parse(v.registerBody);
  const fields = {
    name: body.playerName,
    keyRaw: key.raw,
    port: body.port,
    visibility: body.visibility,
    digest,
    timestamp: body.timestamp,
  };
  const msg = registerMessage(fields);
  expectEq('vector registerMessage', msg.toString('ascii'), unescape(v.registerMessage));
  ok('vector registerMessage');

  const sig = sign(key, msg);
  expectEq('vector registerSignature', b64(sig), v.registerSignature);
  const why = verifyStrict(key.raw, msg, sig);
  expect('vector registerSignature', why === null, `strict verify: ${why}`);
  ok('vector registerSignature');

  const built = JSON.stringify({
    playerName: body.playerName,
    port: body.port,
    publicKey: b64(key.raw),
    visibility: body.visibility,
    friends: [b64(friend.raw)],
    friendsSalt: b64(salt),
    timestamp: body.timestamp,
    signature: b64(sig),
  });
  expectEq('vector registerBody', built, v.registerBody);
  ok('vector registerBody');

  const umsg = unregisterMessage({ name: body.playerName, keyRaw: key.raw, timestamp: 1764000100000 });
  expectEq('vector unregisterMessage', umsg.toString('ascii'), unescape(v.unregisterMessage));
  ok('vector unregisterMessage');
  const usig = sign(key, umsg);
  expectEq('vector unregisterSignature', b64(usig), v.unregisterSignature);
  ok('vector unregisterSignature');
  expectEq('vector lookupId', lookupId("Y'shtola Rhul@Gilgamesh"), v.lookupId);
  ok('vector lookupId');

  // The strict verifier itself: a tampered message and small-order points are refused.
  expect('strict verify', verifyStrict(key.raw, Buffer.concat([msg, Buffer.from('x')]), sig) !== null,
    'accepted a signature over other bytes');
  const identity = Buffer.alloc(32);
  identity[0] = 1; // (0, 1), the neutral element: order 1
  expect('strict verify', verifyStrict(identity, msg, sig) !== null, 'accepted a small-order key');
  const smallR = Buffer.concat([identity, sig.subarray(32)]);
  expect('strict verify', verifyStrict(key.raw, msg, smallR) !== null, 'accepted a small-order R');
  const bigS = Buffer.from(sig);
  let s = leToBig(sig.subarray(32)) + L;
  for (let i = 32; i < 64; i++, s >>= 8n) bigS[i] = Number(s & 0xffn);
  expect('strict verify', verifyStrict(key.raw, msg, bigS) !== null, 'accepted a non-canonical S');
  ok('strict verify refuses tampered, small-order and non-canonical signatures');
}

// ---------------------------------------------------------------------------------------------
// HTTP (PROTOCOL.md "Transport")

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let base;

function request(method, urlPath, { body, token, headers = {} } = {}) {
  const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
  const h = { ...headers };
  if (data) {
    h['Content-Type'] = 'application/json';
    h['Content-Length'] = data.length;
  }
  if (token) h.Authorization = `Bearer ${token}`;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: base.hostname, port: base.port, method, path: urlPath, headers: h, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const where = `${method} ${urlPath}`;
          expect('transport', res.headers['content-length'] !== undefined, `${where}: no Content-Length`);
          expect('transport', /^application\/json\b/.test(res.headers['content-type'] ?? ''),
            `${where}: Content-Type ${res.headers['content-type']}`);
          expect('transport', json !== null && typeof json === 'object', `${where}: body is not a JSON object: ${text}`);
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function expectStatus(name, res, status) {
  expect(name, res.status === status, () => `status ${res.status}, want ${status}: ${res.text}`);
}

// An error answer: status, `error` code, a string `message`, and `retryAfter` equal to the
// Retry-After header when either is there.
function expectError(name, res, status, code) {
  expectStatus(name, res, status);
  expectEq(`${name} (error)`, res.json.error, code);
  expect(name, typeof res.json.message === 'string' && res.json.message.length > 0, `no message: ${res.text}`);
  const header = res.headers['retry-after'];
  if (header !== undefined || res.json.retryAfter !== undefined) {
    expect(name, Number.isInteger(res.json.retryAfter) && String(res.json.retryAfter) === header,
      () => `retryAfter ${res.json.retryAfter} vs Retry-After ${header}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Client operations

// Timestamps: current Unix ms, strictly increasing across this process.
let lastTs = 0;
function now() {
  lastTs = Math.max(Date.now(), lastTs + 1);
  return lastTs;
}

class Player {
  constructor(name, port, key = newKey()) {
    this.name = name;
    this.port = port;
    this.key = key;
    this.token = undefined;
  }

  get publicKey() {
    return b64(this.key.raw);
  }

  registerBody({ visibility = 'public', friends = [], timestamp = now(), ip } = {}) {
    const friendRaw = friends.map((f) => f.key.raw);
    // A fresh random salt for every friends-only registration.
    const salt = visibility === 'friends' ? crypto.randomBytes(32) : undefined;
    const digest = friendsDigest(visibility, salt, friendRaw);
    this.pendingDigest = digest;
    const msg = registerMessage({
      name: this.name,
      keyRaw: this.key.raw,
      port: this.port,
      visibility,
      digest,
      timestamp,
    });
    const body = {
      playerName: this.name,
      port: this.port,
      publicKey: this.publicKey,
      visibility,
    };
    if (friends.length > 0) body.friends = friendRaw.map(b64);
    if (salt !== undefined) body.friendsSalt = b64(salt);
    if (ip !== undefined) body.ip = ip;
    body.timestamp = timestamp;
    body.signature = b64(sign(this.key, msg));
    return body;
  }

  async register(opts) {
    const res = await request('POST', '/api/register', { body: this.registerBody(opts) });
    if (res.status === 200) {
      this.token = res.json.token;
      this.digest = this.pendingDigest;
    }
    return res;
  }

  unregisterBody(timestamp = now()) {
    const msg = unregisterMessage({ name: this.name, keyRaw: this.key.raw, timestamp });
    return {
      playerName: this.name,
      publicKey: this.publicKey,
      timestamp,
      signature: b64(sign(this.key, msg)),
    };
  }

  unregister(timestamp) {
    return request('DELETE', '/api/unregister', { body: this.unregisterBody(timestamp) });
  }

  lookup(name, encode = encodeName) {
    return request('GET', `/api/lookup/${encode(name)}`, { token: this.token });
  }

  lookupBatch(names) {
    return request('POST', '/api/lookup', { body: { names }, token: this.token });
  }
}

// The path segment: percent-encode everything but unreserved characters, so the space is %20,
// the apostrophe %27 and the at sign %40 (the document also allows ' and @ raw).
const encodeName = (name) =>
  encodeURIComponent(name).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const encodeNameRawAt = (name) => encodeName(name).replaceAll('%40', '@').replaceAll('%27', "'");

// Checks a lookup record as PROTOCOL.md says a client must, and against what we expect.
function checkRecord(name, rec, asked, want) {
  expect(name, rec && typeof rec === 'object', 'no record');
  for (const f of ['playerName', 'ip', 'port', 'publicKey', 'visibility', 'friendsDigest', 'timestamp', 'signature', 'expiresIn']) {
    expect(name, rec[f] !== undefined && rec[f] !== null, `record lacks ${f}: ${JSON.stringify(rec)}`);
  }
  const keyRaw = b64decodeStrict(rec.publicKey, 32);
  const digest = b64decodeStrict(rec.friendsDigest, 32);
  const sig = b64decodeStrict(rec.signature, 64);
  expect(name, keyRaw && digest && sig, `bad base64 in ${JSON.stringify(rec)}`);
  const msg = registerMessage({
    name: rec.playerName,
    keyRaw,
    port: rec.port,
    visibility: rec.visibility,
    digest,
    timestamp: rec.timestamp,
  });
  const why = verifyStrict(keyRaw, msg, sig);
  expect(name, why === null, `owner signature: ${why}`);
  expectEq(`${name} (name)`, canonicalName(rec.playerName), canonicalName(asked));
  // Pinning: the key we know for this name.
  expectEq(`${name} (pinned key)`, rec.publicKey, want.player.publicKey);
  // The server keeps no name: it echoes the spelling asked, beside the lookup id.
  expectEq(`${name} (spelling asked)`, rec.playerName, asked);
  expectEq(`${name} (lookupId)`, rec.lookupId, lookupId(asked));
  expectEq(`${name} (port)`, rec.port, want.player.port);
  expectEq(`${name} (visibility)`, rec.visibility, want.visibility);
  // The digest the owner signed at its last registration; the salt itself is never shown.
  expectEq(`${name} (friendsDigest)`, rec.friendsDigest, b64(want.player.digest));
  expect(name, rec.friendsSalt === undefined, `record carries a salt: ${JSON.stringify(rec)}`);
  if (want.visibility === 'public') expectEq(`${name} (public digest)`, rec.friendsDigest, b64(friendsDigest('public')));
  expectEq(`${name} (ip)`, rec.ip, want.ip);
  expect(name, Number.isInteger(rec.expiresIn) && rec.expiresIn > 0, `expiresIn ${rec.expiresIn}`);
}

// ---------------------------------------------------------------------------------------------
// The live run

function randomWord(n) {
  const bytes = crypto.randomBytes(n);
  return Array.from(bytes, (b) => String.fromCharCode(97 + (b % 26))).join('');
}

async function live() {
  // World names with a random tail so that reruns against one server do not collide.
  const world = `Gil${randomWord(8)}`;
  const alice = new Player(`Alisaie Leveilleur@${world}`, 55001);
  const yshtola = new Player(`Y'shtola Rhul@${world}`, 55000); // friends-only, allows alice
  const carol = new Player(`Carol Stranger@${world}`, 55002); // registered, not a friend
  const dave = new Player(`Dave Stranger@${world}`, 55003); // registered, not a friend
  const absent = `Nobody Here@${world}`;

  // Health.
  let res = await request('GET', '/api/health');
  expectStatus('health', res, 200);
  expectEq('health (status)', res.json.status, 'ok');
  for (const f of ['activeUsers', 'capacity', 'ttl', 'uptime']) {
    expect('health', Number.isInteger(res.json[f]) && res.json[f] >= 0, `${f}: ${res.text}`);
  }
  expect('health', typeof res.json.version === 'string', `version: ${res.text}`);
  const users0 = res.json.activeUsers;
  ok('health');

  // Register: public, with the claimed ip equal to the observed one.
  const serverIp = base.hostname.replace(/^\[|\]$/g, '');
  res = await alice.register({ ip: serverIp === 'localhost' ? '127.0.0.1' : serverIp });
  expectStatus('register public', res, 200);
  expectEq('register public (success)', res.json.success, true);
  expectEq('register public (port)', res.json.port, alice.port);
  expect('register public', typeof res.json.ip === 'string', `ip: ${res.text}`);
  const ip = res.json.ip;
  expect('register public', Number.isInteger(res.json.expiresIn) && Number.isInteger(res.json.reregisterIn)
    && res.json.reregisterIn > 0 && res.json.reregisterIn < res.json.expiresIn, `times: ${res.text}`);
  expect('register public', typeof res.json.token === 'string' && /^[\x21-\x7e]{1,64}$/.test(res.json.token),
    `token: ${res.text}`);
  ok('register public');

  // Register: friends-only, allowing alice (and, implicitly, itself).
  res = await yshtola.register({ visibility: 'friends', friends: [alice] });
  expectStatus('register friends-only', res, 200);
  expectEq('register friends-only (success)', res.json.success, true);
  ok('register friends-only with a friend list');

  res = await carol.register();
  expectStatus('register stranger', res, 200);
  res = await dave.register({ visibility: 'friends', friends: [] });
  expectStatus('register friends-only, empty list', res, 200);
  ok('register friends-only with an empty friend list');

  res = await request('GET', '/api/health');
  expectEq('health (activeUsers)', res.json.activeUsers, users0 + 4);
  ok('health counts the registrations');

  // Lookup by name, in another case than registered, percent-encoded.
  const asked = "y'SHTOLA rhul@" + world.toUpperCase();
  res = await alice.lookup(asked);
  expectStatus('lookup friend', res, 200);
  const yRecord = { player: yshtola, visibility: 'friends', friends: [alice], ip };
  checkRecord('lookup friend', res.json, asked, yRecord);
  ok(`lookup friends-only record as a friend (${encodeName(asked)}), owner signature verified`);

  res = await alice.lookup(asked, encodeNameRawAt);
  expectStatus('lookup raw apostrophe and @', res, 200);
  checkRecord('lookup raw apostrophe and @', res.json, asked, yRecord);
  ok(`lookup with raw apostrophe and @ (${encodeNameRawAt(asked)})`);

  res = await yshtola.lookup(yshtola.name);
  expectStatus('lookup self', res, 200);
  checkRecord('lookup self', res.json, yshtola.name, yRecord);
  ok('lookup own friends-only record');

  res = await carol.lookup(alice.name.toLowerCase());
  expectStatus('lookup public', res, 200);
  checkRecord('lookup public', res.json, alice.name.toLowerCase(), { player: alice, visibility: 'public', friends: [], ip });
  ok('lookup public record as a stranger (friendsDigest of nothing)');

  // A stranger looking up a friends-only player gets the answer an absent name gets.
  const hidden = await carol.lookup(yshtola.name);
  expectError('lookup hidden', hidden, 404, 'not_found');
  expect('lookup hidden', Number.isInteger(hidden.json.retryAfter), `no retryAfter: ${hidden.text}`);
  const missing = await dave.lookup(absent);
  expectError('lookup absent', missing, 404, 'not_found');
  expectEq('hidden vs absent (body)', hidden.text, missing.text);
  expectEq('hidden vs absent (Retry-After)', hidden.headers['retry-after'], missing.headers['retry-after']);
  expectEq('hidden vs absent (message)', hidden.json.message, 'no such player, or not visible to you');
  ok('lookup hidden friends-only player == lookup absent name (404 not_found, same body and Retry-After)');

  // Batch lookup: found records in the order asked, hidden and absent left out.
  res = await alice.lookupBatch([carol.name.toUpperCase(), absent, yshtola.name, dave.name]);
  expectStatus('batch lookup', res, 200);
  expect('batch lookup', Array.isArray(res.json.found) && res.json.found.length === 2,
    `want carol and y'shtola: ${res.text}`);
  checkRecord('batch lookup [0]', res.json.found[0], carol.name.toUpperCase(), { player: carol, visibility: 'public', friends: [], ip });
  checkRecord('batch lookup [1]', res.json.found[1], yshtola.name, yRecord);
  ok('batch lookup (order kept, absent and hidden left out, signatures verified)');

  res = await carol.lookupBatch([yshtola.name, absent]);
  expectStatus('batch lookup none found', res, 200);
  expect('batch lookup none found', Array.isArray(res.json.found) && res.json.found.length === 0, res.text);
  expect('batch lookup none found', /^\d+$/.test(res.headers['retry-after'] ?? ''), 'no Retry-After');
  ok('batch lookup with nothing visible (empty found, Retry-After)');

  // Lookups without a valid token.
  res = await request('GET', `/api/lookup/${encodeName(alice.name)}`);
  expectError('lookup without token', res, 401, 'unauthorized');
  expect('lookup without token', /^Bearer\b/.test(res.headers['www-authenticate'] ?? ''), 'no WWW-Authenticate: Bearer');
  ok('lookup without token -> 401 unauthorized, WWW-Authenticate: Bearer');

  // Bad signature: one bit flipped in the signature.
  const bad = alice.registerBody();
  const sigBytes = Buffer.from(bad.signature, 'base64');
  sigBytes[0] ^= 0x01;
  bad.signature = b64(sigBytes);
  res = await request('POST', '/api/register', { body: bad });
  expectError('bad signature', res, 401, 'bad_signature');
  expect('bad signature', Object.keys(res.json).every((k) => ['error', 'message'].includes(k)),
    `extra fields: ${res.text}`);
  ok('bad signature -> 401 {"error":"bad_signature","message":...}');

  // Signature over other bytes: the canonical name must be lowercase.
  const upper = alice.registerBody();
  const upperMsg = Buffer.from(
    registerMessage({ name: 'x', keyRaw: alice.key.raw, port: alice.port, visibility: 'public', digest: friendsDigest('public'), timestamp: upper.timestamp })
      .toString('ascii')
      .replace('name:x', `name:${alice.name}`),
    'ascii',
  );
  upper.signature = b64(sign(alice.key, upperMsg));
  res = await request('POST', '/api/register', { body: upper });
  expectError('signature over the uncanonical name', res, 401, 'bad_signature');
  ok('signature over the name as spelled (not lowercased) -> 401 bad_signature');

  // Renewal: a new token, the old one invalid.
  const oldToken = alice.token;
  res = await alice.register();
  expectStatus('renew', res, 200);
  expect('renew', res.json.token !== oldToken, 'same token after renewal');
  res = await request('GET', `/api/lookup/${encodeName(carol.name)}`, { token: oldToken });
  expectError('old token', res, 401, 'unauthorized');
  res = await alice.lookup(carol.name);
  expectStatus('new token', res, 200);
  ok('renewal returns a new token and invalidates the previous one');

  // Replayed timestamp: the same one again, then an older one.
  const ts = now();
  res = await alice.register({ timestamp: ts });
  expectStatus('register at ts', res, 200);
  res = await alice.register({ timestamp: ts });
  expectError('replayed (same)', res, 409, 'replayed');
  res = await alice.register({ timestamp: ts - 1 });
  expectError('replayed (older)', res, 409, 'replayed');
  ok('replayed timestamp (same and older) -> 409 replayed');

  // Clock skew: an hour in the past and in the future.
  for (const [label, offset] of [['past', -3600_000], ['future', 3600_000]]) {
    const t0 = Date.now();
    res = await carol.register({ timestamp: t0 + offset });
    const t1 = Date.now();
    expectError(`clock skew (${label})`, res, 400, 'clock_skew');
    const st = res.json.serverTime;
    expect(`clock skew (${label})`, Number.isInteger(st) && st >= t0 - 5000 && st <= t1 + 5000,
      `serverTime ${st} not the server's clock in Unix ms (client ${t0}..${t1})`);
  }
  ok('clock skew (past and future) -> 400 clock_skew with serverTime in Unix ms');

  // Another key registering a publicly held name, in another case: the public binding.
  const thief = new Player(alice.name.toUpperCase(), 55009);
  res = await thief.register();
  expectError('key conflict', res, 409, 'key_conflict');
  res = await thief.unregister();
  expectError('no record of this key (unregister)', res, 404, 'not_found');
  ok('another key registering a public name -> 409 key_conflict; unregistering it -> 404');
  // A friends-only name tells a stranger nothing: registering it succeeds as for a free name.
  const squatter = new Player(yshtola.name.toUpperCase(), 55010);
  res = await squatter.register({ visibility: 'friends' });
  expectStatus('register over a friends-only name', res, 200);
  res = await squatter.unregister();
  expectStatus('unregister own record under that name', res, 200);
  ok('registering a friends-only player\'s name -> 200, as for a free name (no oracle)');

  // Unknown request fields are refused.
  res = await request('POST', '/api/register', { body: { ...carol.registerBody(), colour: 'blue' } });
  expectError('unknown field', res, 400, 'bad_request');
  ok('unknown request field -> 400 bad_request');

  // friendsSalt: required for friends-only, refused for public.
  const unsalted = yshtola.registerBody({ visibility: 'friends', friends: [alice] });
  delete unsalted.friendsSalt;
  res = await request('POST', '/api/register', { body: unsalted });
  expectError('friends-only without friendsSalt', res, 400, 'bad_request');
  expect('friends-only without friendsSalt', res.json.message.includes('friendsSalt'), res.text);
  res = await request('POST', '/api/register', { body: { ...carol.registerBody(), friendsSalt: b64(crypto.randomBytes(32)) } });
  expectError('public with friendsSalt', res, 400, 'bad_request');
  ok('friendsSalt missing on friends-only, or present on public -> 400 bad_request');

  // A small-order key is refused.
  const weak = carol.registerBody();
  const identity = Buffer.alloc(32);
  identity[0] = 1;
  weak.publicKey = b64(identity);
  res = await request('POST', '/api/register', { body: weak });
  expectError('small-order key', res, 400, 'bad_request');
  ok('small-order public key -> 400 bad_request');

  // Unregister.
  res = await yshtola.unregister();
  expectStatus('unregister', res, 200);
  expectEq('unregister (success)', res.json.success, true);
  res = await alice.lookup(yshtola.name);
  expectError('lookup after unregister', res, 404, 'not_found');
  res = await yshtola.unregister();
  expectError('unregister again', res, 404, 'not_found');
  ok('unregister -> 200, then lookup 404 not_found, then unregister 404');

  res = await request('GET', '/api/health');
  expectEq('health (activeUsers after unregister)', res.json.activeUsers, users0 + 3);
  ok('health counts the unregistration');

  // The name stays bound to its key.
  res = await thief.register();
  expectError('binding kept', res, 409, 'key_conflict');
  res = await yshtola.register();
  expectStatus('owner re-registers', res, 200);
  ok('binding kept after unregister (other key 409, owner 200)');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const args = process.argv.slice(2);
  const here = path.dirname(fileURLToPath(import.meta.url));
  let protocol = path.join(here, '..', '..', 'docs', 'PROTOCOL.md');
  let url;
  let vectorsOnly = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--protocol') protocol = args[++i];
    else if (args[i] === '--vectors-only') vectorsOnly = true;
    else if (!url) url = args[i];
    else fail('usage', `unexpected argument ${args[i]}`);
  }
  if (!url && !vectorsOnly) {
    fail('usage', 'node client.mjs <server url, e.g. http://127.0.0.1:3000> [--protocol PROTOCOL.md] | --vectors-only');
  }
  checkVectors(protocol);
  if (!vectorsOnly) {
    base = new URL(url);
    await live();
  }
  agent.destroy();
  console.log(`all ${checks} checks passed`);
}

main().catch((e) => fail('exception', e.stack ?? e));
