/** `meshlet ca ...`: create, serve and rotate the built-in certificate authority. */
import { parseArgs } from 'node:util';
import { parseDuration } from '../sidecar/config/duration.ts';
import { createLogger } from '../sidecar/telemetry/logger.ts';
import { KEY_TYPES, type KeyType } from './keys.ts';
import { CaServer } from './server.ts';
import { CaStoreError, DEFAULT_TRUST_DOMAIN, initCa, retireCa, rotateCa } from './store.ts';
import { createToken } from './tokens.ts';

export const DEFAULT_CA_PORT = 15443;
export const DEFAULT_ACTIVATE_IN = '10m';

export const CA_HELP = `meshlet ca - the built-in certificate authority

  meshlet ca init --dir D [--key-type ${KEY_TYPES.join('|')}] [--trust-domain T] [--max-leaf-ttl 7d] [--force]
      create a root and an intermediate CA in D (keys 0600); refuses to overwrite without --force
  meshlet ca token create --dir D --service NAME [--namespace NS]
      print a bootstrap token for one service (stored hashed; shown only now)
  meshlet ca serve --dir D [--port ${DEFAULT_CA_PORT}] [--address 127.0.0.1] [--host NAME]...
      HTTPS API for sidecars: sign CSRs (token or current certificate), trust bundle
  meshlet ca rotate --dir D [--activate-in ${DEFAULT_ACTIVATE_IN}]
      add a new root: trusted at once, signing after --activate-in (time for sidecars to fetch the bundle)
  meshlet ca retire --dir D [--force]
      drop roots older than the signing one from the trust bundle (refused while their leaves may be valid)`;

/** Thrown for bad flags; the CLI prints it with the usage. */
export class CaUsageError extends Error {}

function required(value: string | undefined, flag: string, command: string): string {
  if (!value) throw new CaUsageError(`meshlet ca ${command}: ${flag} is required\n\n${CA_HELP}`);
  return value;
}

function durationFlag(value: string, flag: string): number {
  const days = /^\s*(\d+(?:\.\d+)?)\s*d\s*$/.exec(value);
  const ms = days ? Number(days[1]) * 24 * 3_600_000 : parseDuration(value);
  if (ms === undefined) throw new CaUsageError(`${flag}: expected a duration such as 30s, 10m, 24h or 7d, got "${value}"`);
  return ms;
}

/** Runs `meshlet ca <subcommand>`; resolves with the exit code. */
export async function runCa(args: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    out.write(`${CA_HELP}\n`);
    return sub ? 0 : 2;
  }
  try {
    switch (sub) {
      case 'init': {
        const { values } = parseArgs({
          args: rest,
          options: { dir: { type: 'string' }, 'key-type': { type: 'string' }, 'trust-domain': { type: 'string' }, 'max-leaf-ttl': { type: 'string' }, force: { type: 'boolean', default: false } },
        });
        const manifest = await initCa({
          dir: required(values.dir, '--dir', 'init'),
          keyType: (values['key-type'] ?? 'ec-p256') as KeyType,
          trustDomain: values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN,
          ...(values['max-leaf-ttl'] ? { maxLeafTtlMs: durationFlag(values['max-leaf-ttl'], '--max-leaf-ttl') } : {}),
          force: values.force,
        });
        out.write(`created ${manifest.keyType} root and intermediate for trust domain ${manifest.trustDomain} in ${values.dir}\ntrust bundle: ${values.dir}/bundle.pem\n`);
        return 0;
      }
      case 'token': {
        const [action, ...flags] = rest;
        if (action !== 'create') throw new CaUsageError(`meshlet ca token: expected "create", got "${action ?? ''}"\n\n${CA_HELP}`);
        const { values } = parseArgs({ args: flags, options: { dir: { type: 'string' }, service: { type: 'string' }, namespace: { type: 'string', default: 'default' } } });
        const token = await createToken(required(values.dir, '--dir', 'token create'), required(values.service, '--service', 'token create'), values.namespace);
        out.write(`${token}\n`);
        return 0;
      }
      case 'serve': {
        const { values } = parseArgs({
          args: rest,
          options: { dir: { type: 'string' }, port: { type: 'string', default: String(DEFAULT_CA_PORT) }, address: { type: 'string', default: '127.0.0.1' }, host: { type: 'string', multiple: true } },
        });
        const port = Number(values.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CaUsageError(`--port: expected integer 0-65535, got "${values.port}"`);
        const hosts = values.host ?? [];
        const ips = hosts.filter((h) => /^[\d.]+$|:/.test(h));
        const log = createLogger('info');
        const server = await CaServer.create({
          dir: required(values.dir, '--dir', 'serve'),
          dnsNames: ['localhost', ...hosts.filter((h) => !ips.includes(h))],
          ipAddresses: ['127.0.0.1', '::1', ...ips],
          log,
        });
        const bound = await server.listen(port, values.address);
        log.info({ address: values.address, port: bound, dir: values.dir }, 'CA API serving');
        await new Promise<void>((resolve) => {
          process.once('SIGTERM', resolve);
          process.once('SIGINT', resolve);
        });
        await server.close();
        return 0;
      }
      case 'rotate': {
        const { values } = parseArgs({ args: rest, options: { dir: { type: 'string' }, 'activate-in': { type: 'string', default: DEFAULT_ACTIVATE_IN } } });
        const generation = await rotateCa({ dir: required(values.dir, '--dir', 'rotate'), activateInMs: durationFlag(values['activate-in'], '--activate-in') });
        out.write(`added root generation #${generation.id}; in the trust bundle now, signing from ${generation.activateAt}\n`);
        return 0;
      }
      case 'retire': {
        const { values } = parseArgs({ args: rest, options: { dir: { type: 'string' }, force: { type: 'boolean', default: false } } });
        const retired = await retireCa({ dir: required(values.dir, '--dir', 'retire'), force: values.force });
        out.write(`retired root generation${retired.length > 1 ? 's' : ''} ${retired.map((g) => `#${g.id}`).join(', ')}\n`);
        return 0;
      }
      default:
        throw new CaUsageError(`meshlet ca: unknown subcommand "${sub ?? ''}"\n\n${CA_HELP}`);
    }
  } catch (err) {
    if (err instanceof CaUsageError || err instanceof CaStoreError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`${(err as Error).message}\n`);
      return err instanceof CaStoreError ? 1 : 2;
    }
    throw err;
  }
}
