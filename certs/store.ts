/**
 * The CA on disk. One directory (0700) holds `ca.json` (trust domain, key type, root generations), one
 * `gen-N/` folder per root generation with root and intermediate certificates and keys (keys 0600),
 * `bundle.pem` (every root still trusted) and `tokens.json` (hashed bootstrap tokens).
 *
 * Rotation adds a generation: its root joins the bundle at once, but it signs only from `activateAt`,
 * so sidecars have time to fetch the bundle that trusts it before any peer presents a leaf from it.
 * Retiring drops older roots from the bundle once every leaf they signed has expired.
 */
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { generateKey, KEY_TYPES, type KeyType } from './keys.ts';
import { isTrustDomain } from './spiffe.ts';
import { createCertificate } from './x509.ts';

export const ROOT_VALIDITY_MS = 365 * 24 * 3_600_000;
export const DEFAULT_MAX_LEAF_TTL_MS = 7 * 24 * 3_600_000;
export const DEFAULT_TRUST_DOMAIN = 'meshlet.local';

export interface Generation {
  readonly id: number;
  readonly createdAt: string;
  /** From this time on the generation signs new leaves. */
  readonly activateAt: string;
}

export interface CaManifest {
  readonly version: 1;
  readonly trustDomain: string;
  readonly keyType: KeyType;
  /** Longest leaf lifetime the CA grants; also how long a retired root must have stopped signing. */
  readonly maxLeafTtlMs: number;
  /** Trusted generations, oldest first. */
  readonly generations: Generation[];
}

/** A root and its intermediate, loaded. */
export interface LoadedGeneration extends Generation {
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly intermediateKey: KeyObject;
}

/** A CA problem the operator must fix (exists already, missing, unsafe to retire). */
export class CaStoreError extends Error {}

const MANIFEST = 'ca.json';
const genDir = (dir: string, id: number) => join(dir, `gen-${id}`);

/** Writes a file atomically with the given mode (keys 0600), never leaving a partial file. */
export async function writeSecure(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode); // the umask may have narrowed it; never widened, but be exact
  await rename(tmp, path);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export interface InitOptions {
  readonly dir: string;
  readonly keyType?: KeyType;
  readonly trustDomain?: string;
  readonly maxLeafTtlMs?: number;
  readonly force?: boolean;
  readonly now?: Date;
}

/** `meshlet ca init`: creates a root and an intermediate in `dir`. Refuses to overwrite unless forced. */
export async function initCa(options: InitOptions): Promise<CaManifest> {
  const { dir } = options;
  const keyType = options.keyType ?? 'ec-p256';
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  if (!KEY_TYPES.includes(keyType)) throw new CaStoreError(`--key-type: expected one of ${KEY_TYPES.join(', ')}, got "${keyType}"`);
  if (!isTrustDomain(trustDomain)) throw new CaStoreError(`--trust-domain: expected lowercase letters, digits, "." and "-", got "${trustDomain}"`);
  if (await exists(join(dir, MANIFEST))) {
    if (!options.force) throw new CaStoreError(`a CA already exists in ${dir} (${MANIFEST}); pass --force to replace it (every certificate it issued stops being trusted)`);
    await rm(dir, { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const now = options.now ?? new Date();
  const generation: Generation = { id: 1, createdAt: now.toISOString(), activateAt: now.toISOString() };
  const manifest: CaManifest = { version: 1, trustDomain, keyType, maxLeafTtlMs: options.maxLeafTtlMs ?? DEFAULT_MAX_LEAF_TTL_MS, generations: [generation] };
  await writeGeneration(dir, manifest, generation.id, now);
  await writeSecure(join(dir, 'tokens.json'), '[]\n', 0o600);
  await saveManifest(dir, manifest);
  return manifest;
}

async function writeGeneration(dir: string, manifest: CaManifest, id: number, now: Date): Promise<void> {
  const folder = genDir(dir, id);
  await mkdir(folder, { recursive: true, mode: 0o700 });
  const root = generateKey(manifest.keyType);
  const intermediate = generateKey(manifest.keyType);
  const notAfter = new Date(now.getTime() + ROOT_VALIDITY_MS);
  const rootName = { organization: 'Meshlet', commonName: `Meshlet Root CA ${manifest.trustDomain} #${id}` };
  const intermediateName = { organization: 'Meshlet', commonName: `Meshlet Intermediate CA ${manifest.trustDomain} #${id}` };
  const rootPem = createCertificate({
    subject: rootName,
    issuer: rootName,
    publicKey: root.publicKey,
    signingKey: root.privateKey,
    issuerPublicKey: root.publicKey,
    notBefore: now,
    notAfter,
    ca: {},
  });
  const intermediatePem = createCertificate({
    subject: intermediateName,
    issuer: rootName,
    publicKey: intermediate.publicKey,
    signingKey: root.privateKey,
    issuerPublicKey: root.publicKey,
    notBefore: now,
    notAfter,
    ca: { pathLength: 0 },
  });
  const pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }) as string;
  await writeSecure(join(folder, 'root.key'), pem(root.privateKey), 0o600);
  await writeSecure(join(folder, 'intermediate.key'), pem(intermediate.privateKey), 0o600);
  await writeSecure(join(folder, 'root.pem'), rootPem, 0o644);
  await writeSecure(join(folder, 'intermediate.pem'), intermediatePem, 0o644);
}

async function saveManifest(dir: string, manifest: CaManifest): Promise<void> {
  const roots = await Promise.all(manifest.generations.map((g) => readFile(join(genDir(dir, g.id), 'root.pem'), 'utf8')));
  await writeSecure(join(dir, 'bundle.pem'), roots.join(''), 0o644);
  await writeSecure(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, 0o600);
}

/** Reads `ca.json`; a missing or broken CA is an error naming the directory. */
export async function readManifest(dir: string): Promise<CaManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch {
    throw new CaStoreError(`no CA in ${dir} (missing ${MANIFEST}); create one with: meshlet ca init --dir ${dir}`);
  }
  try {
    const manifest = JSON.parse(text) as CaManifest;
    if (manifest.version !== 1 || !Array.isArray(manifest.generations) || manifest.generations.length === 0) throw new Error('unexpected layout');
    return manifest;
  } catch (err) {
    throw new CaStoreError(`${join(dir, MANIFEST)} is not a Meshlet CA manifest: ${(err as Error).message}`);
  }
}

/** Loads every trusted generation with its intermediate key. */
export async function loadGenerations(dir: string, manifest: CaManifest): Promise<LoadedGeneration[]> {
  return Promise.all(
    manifest.generations.map(async (g) => {
      const folder = genDir(dir, g.id);
      const [rootPem, intermediatePem, keyPem] = await Promise.all([
        readFile(join(folder, 'root.pem'), 'utf8'),
        readFile(join(folder, 'intermediate.pem'), 'utf8'),
        readFile(join(folder, 'intermediate.key'), 'utf8'),
      ]);
      return { ...g, rootPem, intermediatePem, intermediateKey: createPrivateKey(keyPem) };
    }),
  );
}

export interface RotateOptions {
  readonly dir: string;
  /** How long the new root is only trusted, not yet signing (time for every sidecar to fetch the bundle). */
  readonly activateInMs: number;
  readonly now?: Date;
}

/** `meshlet ca rotate`: adds a new root generation; the bundle carries old and new roots. */
export async function rotateCa(options: RotateOptions): Promise<Generation> {
  const manifest = await readManifest(options.dir);
  const now = options.now ?? new Date();
  const id = Math.max(...manifest.generations.map((g) => g.id)) + 1;
  const generation: Generation = { id, createdAt: now.toISOString(), activateAt: new Date(now.getTime() + options.activateInMs).toISOString() };
  await writeGeneration(options.dir, manifest, id, now);
  await saveManifest(options.dir, { ...manifest, generations: [...manifest.generations, generation] });
  return generation;
}

/**
 * `meshlet ca retire`: drops roots older than the active one from the bundle. Refused while leaves they
 * signed may still be valid (active since less than the max leaf TTL) unless forced.
 */
export async function retireCa(options: { dir: string; force?: boolean; now?: Date }): Promise<Generation[]> {
  const manifest = await readManifest(options.dir);
  const now = options.now ?? new Date();
  const active = activeGeneration(manifest.generations, now);
  const retired = manifest.generations.filter((g) => g.id < active.id);
  if (retired.length === 0) throw new CaStoreError(`nothing to retire in ${options.dir}: generation #${active.id} is the oldest trusted root`);
  const safeAt = Date.parse(active.activateAt) + manifest.maxLeafTtlMs;
  if (now.getTime() < safeAt && !options.force) {
    throw new CaStoreError(
      `leaves signed by the old root may be valid until ${new Date(safeAt).toISOString()} (generation #${active.id} active since ${active.activateAt}, max leaf TTL ${manifest.maxLeafTtlMs} ms); retire after that, or pass --force`,
    );
  }
  await saveManifest(options.dir, { ...manifest, generations: manifest.generations.filter((g) => g.id >= active.id) });
  return retired;
}

/** The generation that signs at `now`: the newest one already active. */
export function activeGeneration<G extends Generation>(generations: readonly G[], now: Date): G {
  let active = generations[0]!;
  for (const g of generations) if (Date.parse(g.activateAt) <= now.getTime() && g.id > active.id) active = g;
  return active;
}

