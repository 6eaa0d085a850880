/** Key pairs for the CA and for leaves. ECDSA P-256 is the default: small, fast handshakes, universally supported. */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';

export const KEY_TYPES = ['ec-p256', 'rsa-2048', 'rsa-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export interface KeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/** Generates a key pair of the given type. */
export function generateKey(type: KeyType): KeyPair {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
  }
}
