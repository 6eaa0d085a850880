/**
 * X.509 certificates and PKCS#10 CSRs, built and parsed as DER with node-forge's ASN.1 codec and signed
 * with node:crypto. Why both: node-forge 1.x builds certificates only for RSA keys (its
 * `publicKeyToAsn1` and signers are RSA-only, it has no ECDSA), while node:crypto signs with EC and
 * RSA keys alike but cannot build certificates. So forge encodes the structures (names, extensions,
 * dates) and node:crypto supplies SubjectPublicKeyInfo and signatures, for every key type the same way.
 */
import { createHash, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

const { asn1, pki } = forge;
type Asn1 = forge.asn1.Asn1;
/** forge functions its type definitions omit. */
const pkiExtra = pki as unknown as {
  certificateExtensionsToAsn1(extensions: unknown[]): Asn1;
  RDNAttributesAsArray(rdn: Asn1): Array<{ type: string; value: string }>;
};

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
} as const;

/** Distinguished name: what Meshlet puts in subjects and issuers. */
export interface DistinguishedName {
  readonly commonName: string;
  readonly organization?: string;
}

export interface CertificateSpec {
  readonly subject: DistinguishedName;
  readonly issuer: DistinguishedName;
  /** Subject's public key. */
  readonly publicKey: KeyObject;
  /** Issuer's private key (the subject's own for a self-signed root). */
  readonly signingKey: KeyObject;
  /** Issuer's public key, for the authority key identifier. */
  readonly issuerPublicKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** A CA certificate; `pathLength` limits CAs below it. */
  readonly ca?: { readonly pathLength?: number } | undefined;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Extended key usages for leaves (default: serverAuth and clientAuth). */
  readonly extKeyUsage?: { readonly serverAuth?: boolean; readonly clientAuth?: boolean };
}

const bytes = (buf: Buffer): string => buf.toString('binary');
const buffer = (str: string): Buffer => Buffer.from(str, 'binary');
const der = (node: Asn1): Buffer => buffer(asn1.toDer(node).getBytes());
/** Parses DER, leaving BIT STRINGs (keys, signatures) as bytes rather than guessing they hold ASN.1. */
const parseDer = (input: Buffer | string): Asn1 =>
  (asn1.fromDer as unknown as (b: string, o: { strict: boolean; decodeBitStrings: boolean }) => Asn1)(typeof input === 'string' ? input : bytes(input), { strict: true, decodeBitStrings: false });
const seq = (items: Asn1[]): Asn1 => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
const oidOf = (node: Asn1): string => asn1.derToOid(forge.util.createBuffer(node.value as string));
const oid = (id: string): Asn1 => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(id).getBytes());

function nameToAsn1(name: DistinguishedName): Asn1 {
  const rdn = (id: string, value: string) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, [seq([oid(id), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, forge.util.encodeUtf8(value))])]);
  const rdns: Asn1[] = [];
  if (name.organization) rdns.push(rdn(OID.organization, name.organization));
  rdns.push(rdn(OID.commonName, name.commonName));
  return seq(rdns);
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime after. */
function timeToAsn1(date: Date): Asn1 {
  return date.getUTCFullYear() < 2050
    ? asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

/** The signature AlgorithmIdentifier for a key: ECDSA takes no parameters, RSA takes NULL (RFC 5758, 4055). */
function signatureAlgorithm(key: KeyObject): Asn1 {
  if (key.asymmetricKeyType === 'ec') return seq([oid(OID.ecdsaWithSha256)]);
  if (key.asymmetricKeyType === 'rsa') return seq([oid(OID.sha256WithRsa), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '')]);
  throw new Error(`unsupported signing key type ${key.asymmetricKeyType ?? 'unknown'} (expected EC P-256 or RSA)`);
}

function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(key: KeyObject): Buffer {
  const spki = parseDer(spkiDer(key));
  const bits = (spki.value as Asn1[])[1]!.value as string;
  return createHash('sha1').update(buffer(bits).subarray(1)).digest();
}

function randomSerial(): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive and no leading zero byte
  return bytes(serial);
}

function extensions(spec: CertificateSpec): Asn1 {
  const exts: Array<Record<string, unknown>> = [];
  if (spec.ca) {
    exts.push({ name: 'basicConstraints', critical: true, cA: true, ...(spec.ca.pathLength !== undefined ? { pathLenConstraint: spec.ca.pathLength } : {}) });
    exts.push({ name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true });
  } else {
    exts.push({ name: 'basicConstraints', critical: true, cA: false });
    exts.push({ name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: spec.publicKey.asymmetricKeyType === 'rsa' });
    const eku = spec.extKeyUsage ?? { serverAuth: true, clientAuth: true };
    exts.push({ name: 'extKeyUsage', serverAuth: eku.serverAuth === true, clientAuth: eku.clientAuth === true });
  }
  const altNames = [
    ...(spec.uris ?? []).map((value) => ({ type: 6, value })),
    ...(spec.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(spec.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  if (altNames.length > 0) exts.push({ name: 'subjectAltName', altNames });
  exts.push({ name: 'subjectKeyIdentifier', value: asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, bytes(keyIdentifier(spec.publicKey))) });
  exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: bytes(keyIdentifier(spec.issuerPublicKey)) });
  // A throwaway forge certificate fills in each extension's DER value from the friendly fields above.
  const holder = pki.createCertificate();
  holder.setExtensions(exts);
  return pkiExtra.certificateExtensionsToAsn1(holder.extensions); // already wrapped in the [3] tag
}

/** Builds and signs a certificate; returns it as PEM. */
export function createCertificate(spec: CertificateSpec): string {
  const sigAlg = signatureAlgorithm(spec.signingKey);
  const tbs = seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, randomSerial()),
    sigAlg,
    nameToAsn1(spec.issuer),
    seq([timeToAsn1(spec.notBefore), timeToAsn1(spec.notAfter)]),
    nameToAsn1(spec.subject),
    parseDer(spkiDer(spec.publicKey)),
    extensions(spec),
  ]);
  const signature = sign('sha256', der(tbs), spec.signingKey);
  const cert = seq([tbs, signatureAlgorithm(spec.signingKey), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${bytes(signature)}`)]);
  return toPem('CERTIFICATE', der(cert));
}

export interface CsrSpec {
  readonly commonName: string;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  /** The requester's key pair: the public half goes in, the private half signs. */
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/** Builds a PKCS#10 certificate signing request, as PEM. */
export function createCsr(spec: CsrSpec): string {
  const altNames = [...(spec.uris ?? []).map((value) => ({ type: 6, value })), ...(spec.dnsNames ?? []).map((value) => ({ type: 2, value }))];
  const attributes: Asn1[] = [];
  if (altNames.length > 0) {
    const holder = pki.createCertificate();
    holder.setExtensions([{ name: 'subjectAltName', altNames }]);
    attributes.push(seq([oid(OID.extensionRequest), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, (pkiExtra.certificateExtensionsToAsn1(holder.extensions).value as Asn1[]))]));
  }
  const info = seq([
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(0).getBytes()),
    nameToAsn1({ commonName: spec.commonName }),
    parseDer(spkiDer(spec.publicKey)),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, attributes),
  ]);
  const signature = sign('sha256', der(info), spec.privateKey);
  const csr = seq([info, signatureAlgorithm(spec.privateKey), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${bytes(signature)}`)]);
  return toPem('CERTIFICATE REQUEST', der(csr));
}

export interface ParsedCsr {
  readonly commonName: string | undefined;
  readonly uris: string[];
  readonly dnsNames: string[];
  readonly publicKey: KeyObject;
}

/** Why a CSR was refused; the message is safe to show the requester. */
export class CsrError extends Error {}

/** Parses a PEM CSR and verifies its self-signature; throws CsrError saying what is wrong. */
export function parseCsr(pem: string): ParsedCsr {
  const body = fromPem('CERTIFICATE REQUEST', pem);
  if (!body) throw new CsrError('expected a PEM "CERTIFICATE REQUEST" block');
  let root: Asn1;
  try {
    root = parseDer(body);
  } catch (err) {
    throw new CsrError(`CSR is not valid DER: ${(err as Error).message}`);
  }
  const parts = root.value as Asn1[];
  const info = parts[0];
  const sig = parts[2];
  if (!Array.isArray(parts) || parts.length !== 3 || !info || !Array.isArray(info.value) || !sig || typeof sig.value !== 'string') {
    throw new CsrError('CSR does not have the PKCS#10 structure (info, algorithm, signature)');
  }
  const [, subject, spki, attrs] = info.value as Asn1[];
  if (!subject || !spki) throw new CsrError('CSR lacks a subject or public key');
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: der(spki), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CsrError(`CSR public key cannot be read: ${(err as Error).message}`);
  }
  if (publicKey.asymmetricKeyType === 'ec' && publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CsrError(`CSR key curve ${publicKey.asymmetricKeyDetails?.namedCurve ?? 'unknown'} is not supported (use P-256)`);
  }
  if (publicKey.asymmetricKeyType === 'rsa' && (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new CsrError('CSR RSA key is shorter than 2048 bits');
  }
  if (publicKey.asymmetricKeyType !== 'ec' && publicKey.asymmetricKeyType !== 'rsa') throw new CsrError(`CSR key type ${publicKey.asymmetricKeyType} is not supported`);
  const signature = buffer(sig.value).subarray(1);
  // Verify over the bytes as received, never a re-encoding that a lenient parser might have normalized.
  if (!verify('sha256', firstElement(body), publicKey, signature)) throw new CsrError('CSR signature does not verify (the CSR was altered or signed with another key)');
  const names = pkiExtra.RDNAttributesAsArray(subject);
  const commonName = names.find((a) => a.type === OID.commonName)?.value;
  const uris: string[] = [];
  const dnsNames: string[] = [];
  for (const attr of (attrs?.value as Asn1[] | undefined) ?? []) {
    const [attrOid, values] = attr.value as Asn1[];
    if (!attrOid || oidOf(attrOid) !== OID.extensionRequest) continue;
    for (const ext of ((values?.value as Asn1[])[0]?.value as Asn1[] | undefined) ?? []) {
      const fields = ext.value as Asn1[];
      if (oidOf(fields[0]!) !== OID.subjectAltName) continue;
      const san = parseDer(fields[fields.length - 1]!.value as string);
      for (const name of san.value as Asn1[]) {
        if (name.type === 6) uris.push(name.value as string);
        else if (name.type === 2) dnsNames.push(name.value as string);
      }
    }
  }
  return { commonName: commonName === undefined ? undefined : forge.util.decodeUtf8(commonName), uris, dnsNames, publicKey };
}

/** The first element (tag, length, value) inside the DER SEQUENCE `outer`, as its original bytes. */
function firstElement(outer: Buffer): Buffer {
  const contentStart = (buf: Buffer, at: number): { start: number; length: number } => {
    const first = buf[at + 1]!;
    if (first < 0x80) return { start: at + 2, length: first };
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new CsrError('CSR uses an unsupported DER length encoding');
    let length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[at + 2 + i]!;
    return { start: at + 2 + n, length };
  };
  const inner = contentStart(outer, 0).start;
  const { start, length } = contentStart(outer, inner);
  if (start + length > outer.length) throw new CsrError('CSR is truncated');
  return outer.subarray(inner, start + length);
}

/** PEM text of a DER body. */
export function toPem(label: string, body: Buffer): string {
  const lines = body.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function fromPem(label: string, pem: string): Buffer | undefined {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  return match ? Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64') : undefined;
}

