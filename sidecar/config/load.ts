import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import type * as Yaml from 'yaml';
import type { z } from 'zod';
import { meshError, type MeshletError } from '../errors.ts';
import { configSchema, type MeshletConfig } from './schema.ts';
import { resilienceIssues } from '../resilience/config-checks.ts';
import { routingIssues } from '../routing/config.ts';
import { edgeIssues } from '../edge/config.ts';

/** Formats a path like ['upstreams', 1, 'port'] as `upstreams[1].port`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(root)' : out;
}

function valueAt(input: unknown, path: ReadonlyArray<PropertyKey>): { found: boolean; value: unknown } {
  let cur: unknown = input;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object' || !(key in (cur as object))) return { found: false, value: undefined };
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return { found: true, value: cur };
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** zod's built-in messages without the parts our own format says better ("Too small: ", ", received string"). */
function plainMessage(message: string): string {
  return message.replace(/^(Invalid input|Invalid option|Too small|Too big): /, '').replace(/, received \w+$/, '');
}

/** Turns zod issues into one line each: `field.path: message, got VALUE (file)`. */
export function formatIssues(issues: ReadonlyArray<z.core.$ZodIssue>, input: unknown, source: string): string[] {
  return issues.map((issue) => {
    const where = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      return `${where}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (${source})`;
    }
    const { found, value } = valueAt(input, issue.path);
    const got = found ? `, got ${describeValue(value)}` : ', but it is missing';
    return `${where}: ${plainMessage(issue.message)}${got} (${source})`;
  });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '[::]']);

function crossFieldIssues(config: MeshletConfig, source: string): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const claims: Array<{ where: string; address: string; port: number }> = [];
  // Two listeners clash on the same port when their addresses are equal or either is a wildcard.
  const claim = (where: string, address: string, port: number) => {
    if (port === 0) return;
    const prior = claims.find((c) => c.port === port && (c.address === address || WILDCARD_ADDRESSES.has(c.address) || WILDCARD_ADDRESSES.has(address)));
    if (prior) problems.push(`${where}: port ${port} is already used by ${prior.where}, got ${port} (${source})`);
    else claims.push({ where, address, port });
  };
  // The local app's own port: a sidecar listener there would fail to bind or loop traffic to itself.
  claims.push({ where: 'service.port (the local app)', address: config.service.address, port: config.service.port });
  claim('inbound.port', config.inbound.address, config.inbound.port);
  claim('admin.port', config.admin.address, config.admin.port);
  config.upstreams.forEach((upstream, i) => {
    const prior = names.get(upstream.name);
    if (prior !== undefined) problems.push(`upstreams[${i}].name: already the name of upstreams[${prior}], got "${upstream.name}" (${source})`);
    else names.set(upstream.name, i);
    claim(`upstreams[${i}].port`, upstream.address, upstream.port);
    problems.push(...resilienceIssues(upstream, i, source));
  });
  if (config.proxy) claim('proxy.port', config.proxy.address, config.proxy.port);
  if (config.edge) {
    claim('edge.port', config.edge.address, config.edge.port);
    if (config.edge.tls.acme) claim('edge.tls.acme.challenge.port', config.edge.tls.acme.challenge.address, config.edge.tls.acme.challenge.port);
  }
  problems.push(...routingIssues(config.upstreams, source));
  problems.push(...edgeIssues(config, source));
  return problems;
}

/** Validates a parsed config object; throws MESH_ERR_CONFIG_INVALID listing every problem. */
export function validateConfig(input: unknown, source = 'config'): Readonly<MeshletConfig> {
  const result = configSchema.safeParse(input);
  const problems = result.success ? crossFieldIssues(result.data, source) : formatIssues(result.error.issues, input, source);
  if (!result.success || problems.length > 0) throw configError(problems);
  return deepFreeze(result.data);
}

function configError(problems: string[]): MeshletError {
  const err = meshError('CONFIG_INVALID', `invalid configuration:\n  ${problems.join('\n  ')}`);
  (err as MeshletError & { problems: string[] }).problems = problems;
  return err;
}

const require = createRequire(import.meta.url);

/**
 * The yaml package, loaded on the first YAML text: it is about 12 MB of resident memory, which a
 * sidecar configured by JSON (as injected ones often are) need never carry. Synchronous on purpose,
 * so parseConfigText stays synchronous for its callers.
 */
function parseYaml(text: string): unknown {
  return (require('yaml') as typeof Yaml).parse(text);
}

/** Parses YAML or JSON text (YAML is a superset; JSON files get JSON's stricter errors). */
export function parseConfigText(text: string, file: string): unknown {
  try {
    return file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw meshError('CONFIG_INVALID', `${basename(file)}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, err);
  }
}

/**
 * Config text from an environment variable (`--config-env`): JSON, as the injector writes it, is parsed
 * without loading the YAML parser; anything else is YAML. JSON is YAML's subset, so the result is the
 * same, except that JSON.parse keeps the last of duplicate keys where YAML rejects them.
 */
export function parseConfigEnvText(text: string, envName: string): unknown {
  if (/^\s*\{/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      // Not JSON (e.g. a YAML flow mapping such as `{service: {name: a}}`): the YAML parser below reports its own error.
    }
  }
  return parseConfigText(text, `${envName}.yaml`);
}

/**
 * Config fields holding file paths. A relative path in a config file is resolved from the file's own
 * directory, so a config and its catalog can move together (and work in a container whatever its cwd).
 */
export const CONFIG_PATH_FIELDS: ReadonlyArray<readonly string[]> = [
  ['discovery', 'file', 'path'],
  ['security', 'ca', 'dir'],
  ['security', 'ca', 'tokenFile'],
  ['security', 'ca', 'caFile'],
  ['edge', 'tls', 'certFile'],
  ['edge', 'tls', 'keyFile'],
  ['edge', 'tls', 'acme', 'caFile'],
  ['edge', 'tls', 'acme', 'storageDir'],
];

function resolveRelativePaths(raw: unknown, baseDir: string): void {
  for (const field of CONFIG_PATH_FIELDS) {
    const parent = valueAt(raw, field.slice(0, -1));
    const key = field[field.length - 1]!;
    if (!parent.found || parent.value === null || typeof parent.value !== 'object') continue;
    const holder = parent.value as Record<string, unknown>;
    const value = holder[key];
    if (typeof value === 'string' && value !== '' && !isAbsolute(value)) holder[key] = resolvePath(baseDir, value);
  }
}

/** Reads, parses and validates a config file into a frozen snapshot. */
export async function loadConfigFile(file: string): Promise<Readonly<MeshletConfig>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw meshError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, err);
  }
  const raw = parseConfigText(text, file);
  resolveRelativePaths(raw, dirname(resolvePath(file)));
  return validateConfig(raw, basename(file));
}
