#!/usr/bin/env node
// Test-only producer of Sigstore and cosign signatures for imagelock's tests, made with
// code that is not imagelock's: sigstore-js (@sigstore/sign builds and signs the bundles,
// @sigstore/oci attaches them to images) against an in-memory mock Sigstore
// (@sigstore/mock's Fulcio CA, CT log and Rekor log). One run makes everything a test
// needs, because the mock's keys live only in this process: the trusted root, key pairs,
// bundles, legacy `.sig` annotations, and optionally pushes them to a registry.
//
// Usage: node produce.mjs JOB.json      (or the job on standard input)
// The job format, the outputs and what is done about the mock's unfaithful parts are in
// README.md beside this file. A summary of what was made is printed as JSON on stdout.
// Nothing here reaches the network: the mock services listen on a loopback port of this
// process, and the registry, if any, is the job's.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import bundleLib from '@sigstore/bundle';
import mock from '@sigstore/mock';
import oci from '@sigstore/oci';
import sign from '@sigstore/sign';

const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';
const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
// Names that only label the mock instance (checkpoint origin, trusted-root URLs); the
// clients talk to the loopback server below.
const REKOR_NAME = 'https://rekor.imagelock.test';
const FULCIO_NAME = 'https://fulcio.imagelock.test';
const CTLOG_NAME = 'https://ctfe.imagelock.test';

// ---- small helpers ----

const sha256 = (data) => crypto.createHash('sha256').update(data).digest();
const sha256Hex = (data) => sha256(data).toString('hex');
const b64 = (data) => Buffer.from(data).toString('base64');

function pemEncode(type, der) {
  const lines = der.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN ${type}-----\n${lines}\n-----END ${type}-----\n`;
}

function pemDecode(pem) {
  const match = /-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!match) throw new Error('not PEM');
  return { type: match[1], der: Buffer.from(match[2].replace(/\s/g, ''), 'base64') };
}

// Go's pem.EncodeToMemory of the DER, which is what Rekor's CanonicalValue() writes.
const canonicalPEM = (pem) => {
  const { type, der } = pemDecode(pem);
  return pemEncode(type, der);
};

function publicKeyOf(pem) {
  const { type } = pemDecode(pem);
  return type === 'CERTIFICATE' ? new crypto.X509Certificate(pem).publicKey : crypto.createPublicKey(pem);
}

// DSSE's pre-authentication encoding.
function pae(type, payload) {
  const t = Buffer.from(type);
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${payload.length} `), payload]);
}

const whole = (date) => new Date(Math.floor(date.getTime() / 1000) * 1000);
const fail = (message) => {
  throw new Error(message);
};

// ---- the mock Sigstore ----

// Rekor v1 stores, and signs, the *canonicalized* entry it derives from the proposed one,
// not the proposal itself; @sigstore/mock's log signs whatever it is given. This front
// does Rekor's derivation (rekor pkg/types/{hashedrekord,dsse}/v0.0.1 Canonicalize) and
// hands the result to the mock log, which then computes the SET and inclusion proof over
// the same bytes a real Rekor would have logged.
function canonicalEntry(proposed) {
  const kind = `${proposed.kind}/${proposed.apiVersion}`;
  if (kind === 'hashedrekord/0.0.1') {
    const { data, signature } = proposed.spec;
    const keyPEM = Buffer.from(signature.publicKey.content, 'base64').toString();
    return {
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: { hash: { algorithm: data.hash.algorithm, value: data.hash.value } },
        signature: { content: signature.content, publicKey: { content: b64(canonicalPEM(keyPEM)) } },
      },
    };
  }
  if (kind === 'dsse/0.0.1') {
    const envelopeJSON = proposed.spec.proposedContent.envelope;
    const envelope = JSON.parse(envelopeJSON);
    const payload = Buffer.from(envelope.payload, 'base64');
    const verifiers = proposed.spec.proposedContent.verifiers.map((v) => Buffer.from(v, 'base64').toString());
    // As Rekor does: every signature must verify with one of the verifiers.
    const signatures = envelope.signatures.map((s) => {
      const verifier = verifiers.find((v) =>
        crypto.verify('sha256', pae(envelope.payloadType, payload), publicKeyOf(v), Buffer.from(s.sig, 'base64')),
      );
      if (!verifier) fail('DSSE signature does not verify with any verifier');
      return { signature: s.sig, verifier: b64(canonicalPEM(verifier)) };
    });
    signatures.sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
    return {
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        envelopeHash: { algorithm: 'sha256', value: sha256Hex(envelopeJSON) },
        payloadHash: { algorithm: 'sha256', value: sha256Hex(payload) },
        signatures,
      },
    };
  }
  fail(`this mock Rekor takes hashedrekord and dsse v0.0.1 entries, not ${kind}`);
}

// `rekorBodies`: 'canonical' (the default) logs what Rekor would; 'proposed' logs the
// client's proposal as @sigstore/mock's own handler does, to show what verifiers make of it.
// The mock proves inclusion in a log holding only this entry: tree size 1, index 0, no
// hashes. Proto3 JSON drops those zero values, and verifiers that require the fields
// (sigstore-python) refuse the bundle. A real log has other entries, so this puts the
// entry at its log index in a larger tree whose other subtrees have random hashes (which
// is all a verifier ever sees of them), with RFC 6962 audit path and root, and a new
// checkpoint over that root signed with the log's key, as Rekor v1's signed note is.
function realisticInclusionProof(entry, tlogKeys) {
  const hash = (...parts) => sha256(Buffer.concat(parts));
  const leaf = hash(Buffer.from([0]), Buffer.from(entry.body, 'base64'));
  const index = entry.logIndex;
  const size = index + 1 + crypto.randomInt(1, 1000);
  // RFC 6962 §2.1.1 PATH(m, D[n]), with random hashes standing for the other subtrees.
  const path = (m, n) => {
    if (n === 1) return { root: leaf, hashes: [] };
    let k = 1;
    while (k * 2 < n) k *= 2;
    const other = crypto.randomBytes(32);
    if (m < k) {
      const sub = path(m, k);
      return { root: hash(Buffer.from([1]), sub.root, other), hashes: [...sub.hashes, other] };
    }
    const sub = path(m - k, n - k);
    return { root: hash(Buffer.from([1]), other, sub.root), hashes: [...sub.hashes, other] };
  };
  const { root, hashes } = path(index, size);
  const old = entry.verification.inclusionProof.checkpoint;
  const [origin] = old.split('\n');
  const note = `${origin}\n${size}\n${root.toString('base64')}\nTimestamp: ${entry.integratedTime * 1e9}\n`;
  const keyHint = Buffer.from(entry.logID, 'hex').subarray(0, 4);
  const signature = Buffer.concat([keyHint, crypto.sign('sha256', Buffer.from(note), tlogKeys.privateKey)]);
  const name = origin.split(' ')[0];
  return {
    logIndex: index,
    treeSize: size,
    rootHash: root.toString('hex'),
    hashes: hashes.map((h) => h.toString('hex')),
    checkpoint: `${note}\n\u2014 ${name} ${signature.toString('base64')}\n`,
  };
}

async function startSigstore(now, rekorBodies = 'canonical') {
  const keyPair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keys = { ca: keyPair(), ctlog: keyPair(), tlog: keyPair() };
  const ctlog = await mock.initializeCTLog(keys.ctlog);
  const ca = await mock.initializeCA(keys.ca, ctlog);
  const tlog = await mock.initializeTLog(REKOR_NAME, keys.tlog);
  const fulcio = mock.fulcioHandler(ca);
  if (!['canonical', 'proposed'].includes(rekorBodies)) fail(`rekor_bodies: ${rekorBodies}?`);
  const mockRekor = mock.rekorHandler(tlog);
  const routes = {
    [`POST ${fulcio.path}`]: fulcio.fn,
    [`POST ${mockRekor.path}`]: rekorBodies === 'proposed' ? mockRekor.fn : async (body) => {
      try {
        const entry = await tlog.log(canonicalEntry(JSON.parse(body)));
        for (const e of Object.values(entry)) e.verification.inclusionProof = realisticInclusionProof(e, keys.tlog);
        return { statusCode: 201, response: JSON.stringify(entry), contentType: 'application/json' };
      } catch (e) {
        return { statusCode: 400, response: String(e.message) };
      }
    },
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const route = routes[`${req.method} ${req.url}`];
      const { statusCode, response, contentType } = route
        ? await route(Buffer.concat(chunks).toString())
        : { statusCode: 404, response: 'not found' };
      res.writeHead(statusCode, { 'Content-Type': contentType || 'text/plain' });
      res.end(response);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { keys, ca, ctlog, tlog, server, url, started: now };
}

// A trusted_root.json for the mock instance: its CA root, Rekor key and CT log key, each
// valid from the instance's start (whole seconds, before anything it signed) unless the
// job's `trusted_root` overrides a window.
function trustedRoot(sigstore, windows = {}) {
  const spki = (keyPair) => keyPair.publicKey.export({ format: 'der', type: 'spki' });
  const window = (name) => {
    const w = windows[name] || {};
    const validFor = { start: w.start || sigstore.started.toISOString() };
    if (w.end) validFor.end = w.end;
    return validFor;
  };
  const log = (baseUrl, keyPair, name) => ({
    baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(spki(keyPair)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: window(name) },
    logId: { keyId: b64(sha256(spki(keyPair))) },
  });
  return {
    mediaType: TRUSTED_ROOT_MEDIA_TYPE,
    tlogs: [log(REKOR_NAME, sigstore.keys.tlog, 'tlog')],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: FULCIO_NAME,
        certChain: { certificates: [{ rawBytes: b64(sigstore.ca.rootCertificate) }] },
        validFor: window('ca'),
      },
    ],
    ctlogs: [log(CTLOG_NAME, sigstore.keys.ctlog, 'ctlog')],
    timestampAuthorities: [],
  };
}

// ---- signers ----

// An unsigned OIDC token: the mock Fulcio reads its claims without checking a signature.
function identityToken({ subject, issuer }) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ iss: issuer, sub: subject, aud: 'sigstore', iat: now, exp: now + 600 })}.`;
}

// Runs `fn` with the mock CA (and its CT log) issuing as if the clock were `offset`
// seconds off, so the certificate's validity window misses the signing time.
async function withCAClock(sigstore, offset, fn) {
  if (!offset) return fn();
  const clock = () => new Date(Date.now() + offset * 1000);
  const saved = [sigstore.ca.getCurrentTime, sigstore.ctlog.getCurrentTime];
  sigstore.ca.getCurrentTime = clock;
  sigstore.ctlog.getCurrentTime = clock;
  try {
    return await fn();
  } finally {
    [sigstore.ca.getCurrentTime, sigstore.ctlog.getCurrentTime] = saved;
  }
}

// A managed key, as `cosign generate-key-pair` makes (ECDSA P-256, SHA-256 signatures).
class KeySigner {
  constructor(keyPair) {
    this.privateKey = keyPair.privateKey;
    const der = keyPair.publicKey.export({ format: 'der', type: 'spki' });
    this.publicKeyPEM = pemEncode('PUBLIC KEY', der);
    this.hint = b64(sha256(der));
  }
  async sign(data) {
    return {
      signature: crypto.sign('sha256', data, this.privateKey),
      key: { $case: 'publicKey', publicKey: this.publicKeyPEM, hint: this.hint },
    };
  }
}

// @sigstore/sign's MessageSignatureBundleBuilder writes v0.2 bundles (certificate chain);
// the same build with a single certificate is a v0.3 bundle, as cosign v3 writes.
class MessageSignatureV03BundleBuilder extends sign.MessageSignatureBundleBuilder {
  async package(artifact, signature) {
    return bundleLib.toMessageSignatureBundle({
      digest: sha256(artifact.data),
      signature: signature.signature,
      certificate: signature.key.$case === 'x509Certificate' ? pemDecode(signature.key.certificate).der : undefined,
      keyHint: signature.key.$case === 'publicKey' ? signature.key.hint : undefined,
      certificateChain: false,
    });
  }
}

// ---- payloads ----

// cosign's simple-signing payload (Go's json.Marshal field order).
const simpleSigningPayload = (reference, digest, optional) =>
  Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': reference },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: optional ?? null,
    }),
  );

// cosign v3's statement for `cosign sign` (cmd/cosign/cli/sign/sign.go signDigestBundle).
function cosignStatement(digest) {
  const [algorithm, hex] = digest.split(':');
  return Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ digest: { [algorithm]: hex } }],
      predicateType: COSIGN_SIGN_PREDICATE,
      predicate: {},
    }),
  );
}

// cosign's `dev.sigstore.cosign/bundle` annotation from a Rekor v1 log entry.
function cosignRekorBundle(entry) {
  return JSON.stringify({
    SignedEntryTimestamp: b64(entry.inclusionPromise.signedEntryTimestamp),
    Payload: {
      body: b64(entry.canonicalizedBody),
      integratedTime: Number(entry.integratedTime),
      logIndex: Number(entry.logIndex),
      logID: Buffer.from(entry.logId.keyId).toString('hex'),
    },
  });
}

// ---- one signature ----

async function makeSignature(spec, ctx) {
  const { sigstore, job, out, keys } = ctx;
  const name = spec.name || fail('every signature needs a name');
  const digest = spec.digest || job.manifest.digest;
  const kind = spec.kind || fail(`${name}: no kind (dsse, message or legacy)`);
  if (!!spec.identity === !!spec.key) fail(`${name}: give exactly one of identity and key`);
  const signer = spec.identity
    ? new sign.FulcioSigner({
        fulcioBaseURL: sigstore.url,
        identityProvider: { getToken: async () => identityToken(spec.identity) },
      })
    : keys.get(spec.key);
  const witnesses = spec.tlog === false ? [] : [new sign.RekorWitness({ rekorBaseURL: sigstore.url, entryType: 'dsse' })];
  const result = {
    name,
    kind,
    signer: spec.identity ? { identity: spec.identity } : { key: spec.key },
    signed_digest: digest,
  };
  const build = (builder, artifact) =>
    withCAClock(sigstore, spec.certificate_clock_offset, () => new builder({ signer, witnesses }).create(artifact));
  const write = (file, data) => {
    fs.writeFileSync(path.join(out, file), data);
    return path.join(out, file);
  };

  let bundle;
  if (kind === 'dsse') {
    const statement = cosignStatement(digest);
    bundle = await build(sign.DSSEBundleBuilder, { data: statement, type: INTOTO_PAYLOAD_TYPE });
    result.statement = write(`${name}.statement.json`, statement);
  } else if (kind === 'message' || kind === 'legacy') {
    const reference = spec.docker_reference || job.docker_reference || fail(`${name}: no docker_reference`);
    const payload = simpleSigningPayload(reference, digest, spec.optional);
    Object.assign(result, {
      payload: write(`${name}.payload.json`, payload),
      payload_digest: `sha256:${sha256Hex(payload)}`,
    });
    if (kind === 'legacy' && spec.key && spec.tlog === false) {
      // No log, no bundle: cosign's `--tlog-upload=false` with a key.
      result.annotations = { 'dev.cosignproject.cosign/signature': b64((await signer.sign(payload)).signature) };
    } else {
      bundle = await build(MessageSignatureV03BundleBuilder, { data: payload });
    }
  } else {
    fail(`${name}: unknown kind ${kind}`);
  }

  const entry = bundle?.verificationMaterial.tlogEntries[0];
  if (entry) result.log_index = Number(entry.logIndex);
  if (kind === 'legacy' && bundle) {
    const annotations = {
      'dev.cosignproject.cosign/signature': b64(bundle.content.messageSignature.signature),
    };
    const material = bundle.verificationMaterial.content;
    if (material.$case === 'certificate') {
      annotations['dev.sigstore.cosign/certificate'] = pemEncode('CERTIFICATE', Buffer.from(material.certificate.rawBytes));
      annotations['dev.sigstore.cosign/chain'] = pemEncode('CERTIFICATE', sigstore.ca.rootCertificate);
    }
    if (entry) annotations['dev.sigstore.cosign/bundle'] = cosignRekorBundle(entry);
    result.annotations = annotations;
  } else if (bundle) {
    result.bundle_json = JSON.stringify(bundleLib.bundleToJSON(bundle));
    result.bundle = write(`${name}.sigstore.json`, result.bundle_json);
  }
  if (result.annotations) {
    result.annotations_file = write(`${name}.annotations.json`, JSON.stringify(result.annotations, null, 2));
  }
  result.push = spec.push !== false && !!job.registry;
  return result;
}

// ---- registry ----

function registryClient(job) {
  const base = job.registry.replace(/\/$/, '');
  const headers = {};
  if (job.registry_auth) {
    headers.Authorization = `Basic ${b64(`${job.registry_auth.username}:${job.registry_auth.password}`)}`;
  }
  const repo = `${base}/v2/${job.repository}`;
  const request = (url, options = {}) => fetch(url, { ...options, headers: { ...headers, ...options.headers } });
  const expect = async (res, status, what) => {
    if (res.status !== status) fail(`${what}: HTTP ${res.status} ${await res.text()}`);
    return res;
  };
  return {
    async putBlob(data) {
      const digest = `sha256:${sha256Hex(data)}`;
      const head = await request(`${repo}/blobs/${digest}`, { method: 'HEAD' });
      if (head.status !== 200) {
        const start = await expect(await request(`${repo}/blobs/uploads/`, { method: 'POST' }), 202, 'start upload');
        const location = new URL(start.headers.get('location'), base);
        location.searchParams.set('digest', digest);
        await expect(
          await request(location.href, {
            method: 'PUT',
            body: data,
            headers: { 'Content-Type': 'application/octet-stream' },
          }),
          201,
          `upload ${digest}`,
        );
      }
      return { digest, size: data.length };
    },
    async headManifest(reference) {
      const accept = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json',
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json'].join(',');
      const res = await expect(
        await request(`${repo}/manifests/${reference}`, { method: 'HEAD', headers: { Accept: accept } }),
        200,
        `manifest ${reference}`,
      );
      return {
        mediaType: res.headers.get('content-type'),
        digest: res.headers.get('docker-content-digest'),
        size: Number(res.headers.get('content-length')),
      };
    },
    async getManifest(reference, accept) {
      const res = await request(`${repo}/manifests/${reference}`, { headers: { Accept: accept } });
      if (res.status === 404) return undefined;
      await expect(res, 200, `get ${reference}`);
      return JSON.parse(await res.text());
    },
    async putManifest(reference, mediaType, body) {
      await expect(
        await request(`${repo}/manifests/${reference}`, {
          method: 'PUT',
          body,
          headers: { 'Content-Type': mediaType },
        }),
        201,
        `put manifest ${reference}`,
      );
      return { digest: `sha256:${sha256Hex(body)}`, size: body.length };
    },
  };
}

// The legacy signature image, tagged `sha256-<hex>.sig`, laid out as cosign writes it
// (pkg/oci/empty, pkg/oci/mutate, go-containerregistry's mutate.Append): an OCI manifest,
// one simple-signing layer per signature with its annotations, and the config of an
// empty image with those layers. Layers already under the tag are kept (cosign appends).
async function pushLegacy(client, digest, signatures) {
  const tag = `${digest.replace(':', '-')}.sig`;
  const existing = await client.getManifest(tag, OCI_MANIFEST);
  const layers = existing ? [...existing.layers] : [];
  for (const s of signatures) {
    const payload = fs.readFileSync(s.payload);
    const blob = await client.putBlob(payload);
    layers.push({ mediaType: SIMPLE_SIGNING_MEDIA_TYPE, size: blob.size, digest: blob.digest, annotations: s.annotations });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const configBlob = await client.putBlob(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, size: configBlob.size, digest: configBlob.digest },
      layers,
    }),
  );
  const pushed = await client.putManifest(tag, OCI_MANIFEST, manifest);
  return { tag, digest: pushed.digest };
}

// A bundle as cosign v3 attaches it (pkg/oci/remote WriteAttestationNewBundleFormat and the
// bundle spec's annotations), through @sigstore/oci: an OCI 1.1 artifact manifest whose
// subject is the image, plus the referrers tag schema index `sha256-<hex>` when the
// registry has no referrers API.
async function pushBundle(job, signature) {
  const host = new URL(job.registry).host;
  const annotations =
    signature.kind === 'dsse'
      ? { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': COSIGN_SIGN_PREDICATE }
      : { 'dev.sigstore.bundle.content': 'message-signature' };
  const descriptor = await oci.attachArtifactToImage({
    imageName: `${host}/${job.repository}`,
    imageDigest: job.manifest.digest,
    artifact: Buffer.from(signature.bundle_json),
    mediaType: BUNDLE_MEDIA_TYPE,
    annotations,
    credentials: job.registry_auth,
  });
  return { digest: descriptor.digest, referrers_tag: job.manifest.digest.replace(':', '-') };
}

// ---- main ----

async function readJob() {
  const file = process.argv[2];
  if (file && file !== '-') return JSON.parse(fs.readFileSync(file, 'utf8'));
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString());
}

// The images a job signs, each as a job of its own (the shared fields plus its
// `repository`, `manifest`, `docker_reference` and `signatures`): the top-level image, if
// the job names one, then every entry of `targets`. All share one mock instance, so one
// trusted root, and the key pairs.
function targetsOf(job) {
  const images = [];
  if (job.manifest || job.repository || job.signatures) images.push({ ...job, targets: undefined });
  for (const t of job.targets || []) {
    images.push({
      ...job,
      targets: undefined,
      repository: t.repository,
      manifest: t.manifest,
      docker_reference: t.docker_reference,
      signatures: t.signatures,
    });
  }
  if (!images.length) fail('the job names no image: give manifest (and signatures) or targets');
  const names = new Set();
  for (const image of images) {
    if (!image.manifest?.digest) fail(`${image.repository || 'job'}: manifest.digest: the signed manifest digest`);
    if (!image.docker_reference && image.registry) {
      image.docker_reference = `${new URL(image.registry).host}/${image.repository}`;
    }
    for (const spec of image.signatures || []) {
      if (names.has(spec.name)) fail(`${spec.name}: signature names name output files, so are unique in a job`);
      names.add(spec.name);
    }
  }
  return images;
}

async function main() {
  const job = await readJob();
  const out = job.out || fail('job.out: the output directory');
  const images = targetsOf(job);
  fs.mkdirSync(out, { recursive: true });
  // Loopback traffic (mock services, test registry) must not go through a proxy.
  process.env.NO_PROXY = process.env.no_proxy = '127.0.0.1,localhost';

  const clients = images.map((image) => image.registry && registryClient(image));
  for (const [i, client] of clients.entries()) {
    if (!client) continue;
    // The bundles' subject descriptor is the registry's (@sigstore/oci asks it for it):
    // check first that it is the manifest the job means.
    const { manifest, repository } = images[i];
    const subject = await client.headManifest(manifest.digest);
    for (const field of ['digest', 'mediaType', 'size']) {
      if (manifest[field] !== undefined && manifest[field] !== subject[field]) {
        fail(`${repository}: manifest ${field}: the job says ${manifest[field]}, the registry ${subject[field]}`);
      }
    }
  }

  const sigstore = await startSigstore(whole(new Date()), job.rekor_bodies);
  // Certificates' times are whole seconds, and the mock's encoder rounds a Date's
  // milliseconds: a leaf issued at 12.7 s said notBefore 13 s while Rekor logged it at
  // 12 s (integrated times are floored), and a verifier rightly refused it as not yet
  // valid. So the CA and its CT log read a clock floored to the second (as Fulcio's
  // certificates are), and nothing is signed in the second the root was made in.
  const floored = () => new Date(Math.floor(Date.now() / 1000) * 1000);
  sigstore.ca.getCurrentTime = floored;
  sigstore.ctlog.getCurrentTime = floored;
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 50));
  try {
    const keys = new Map();
    const keyFiles = {};
    for (const spec of images.flatMap((image) => image.signatures || [])) {
      if (spec.key && !keys.has(spec.key)) {
        const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
        const signer = new KeySigner(pair);
        keys.set(spec.key, signer);
        const pub = path.join(out, `${spec.key}.pub`);
        fs.writeFileSync(pub, signer.publicKeyPEM);
        fs.writeFileSync(
          path.join(out, `${spec.key}.key`),
          pair.privateKey.export({ format: 'pem', type: 'pkcs8' }),
        );
        keyFiles[spec.key] = {
          public: pub,
          fingerprint: `sha256:${sha256Hex(pair.publicKey.export({ format: 'der', type: 'spki' }))}`,
        };
      }
    }

    const results = [];
    for (const image of images) {
      const ctx = { sigstore, job: image, out, keys };
      const signatures = [];
      for (const spec of image.signatures || []) signatures.push(await makeSignature(spec, ctx));
      results.push({ repository: image.repository, signatures });
    }

    const rootPath = path.join(out, 'trusted_root.json');
    fs.writeFileSync(rootPath, JSON.stringify(trustedRoot(sigstore, job.trusted_root), null, 2));

    for (const [i, result] of results.entries()) {
      const client = clients[i];
      if (!client) continue;
      const { signatures } = result;
      const legacy = signatures.filter((s) => s.push && s.kind === 'legacy');
      if (legacy.length) result.sig = await pushLegacy(client, images[i].manifest.digest, legacy);
      for (const s of signatures.filter((s) => s.push && s.kind !== 'legacy' && s.bundle_json)) {
        s.pushed = await pushBundle(images[i], s);
      }
    }
    for (const s of results.flatMap((r) => r.signatures)) {
      delete s.bundle_json;
      delete s.annotations;
    }
    // A job without `targets` keeps the single-image summary: {trusted_root, keys, signatures, sig}.
    const summary = { trusted_root: rootPath, keys: keyFiles };
    if (job.targets) {
      summary.targets = results;
    } else {
      summary.signatures = results[0].signatures;
      if (results[0].sig) summary.sig = results[0].sig;
    }
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    sigstore.server.close();
  }
}

main().catch((e) => {
  process.stderr.write(`produce.mjs: ${e.stack || e}\n`);
  if (e.cause) process.stderr.write(`caused by: ${e.cause.stack || e.cause}\n`);
  process.exit(1);
});
