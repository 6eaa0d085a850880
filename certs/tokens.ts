/**
 * Bootstrap tokens: one per service, shown once at creation and stored only as a SHA-256 hash in
 * `tokens.json` (0600). A token is 32 random bytes, so a plain hash is enough (no dictionary to attack).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isIdentityName } from './spiffe.ts';
import { CaStoreError, readManifest, writeSecure } from './store.ts';

export interface TokenRecord {
  /** Hex SHA-256 of the token. */
  readonly hash: string;
  readonly service: string;
  readonly namespace: string;
  readonly createdAt: string;
}

const TOKEN_PREFIX = 'mshl_';

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

async function readTokens(dir: string): Promise<TokenRecord[]> {
  try {
    return JSON.parse(await readFile(join(dir, 'tokens.json'), 'utf8')) as TokenRecord[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CaStoreError(`${join(dir, 'tokens.json')} is unreadable: ${(err as Error).message}`);
  }
}

/** `meshlet ca token create`: returns the new token (the only time it exists in clear). */
export async function createToken(dir: string, service: string, namespace = 'default'): Promise<string> {
  await readManifest(dir); // fails clearly when there is no CA here
  if (!isIdentityName(service)) throw new CaStoreError(`--service: expected letters, digits, ".", "_" or "-", got "${service}"`);
  if (!isIdentityName(namespace)) throw new CaStoreError(`--namespace: expected letters, digits, ".", "_" or "-", got "${namespace}"`);
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const tokens = await readTokens(dir);
  tokens.push({ hash: hashToken(token).toString('hex'), service, namespace, createdAt: new Date().toISOString() });
  await writeSecure(join(dir, 'tokens.json'), `${JSON.stringify(tokens, null, 2)}\n`, 0o600);
  return token;
}

/** The identity a token grants, or undefined when it is unknown. Compared in constant time. */
export async function lookupToken(dir: string, token: string): Promise<TokenRecord | undefined> {
  const hash = hashToken(token);
  let found: TokenRecord | undefined;
  for (const record of await readTokens(dir)) {
    const stored = Buffer.from(record.hash, 'hex');
    if (stored.length === hash.length && timingSafeEqual(stored, hash)) found = record;
  }
  return found;
}
