#!/usr/bin/env node
/** The `meshlet` command line: sidecar, demo, and the tools that grow around them. */
import process from 'node:process';
import { realpathSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFile, parseConfigEnvText, validateConfig } from './config/load.ts';
import { installConfigReload } from './config/reloader.ts';
import { redactSecrets } from './admin/server.ts';
import { MeshletError } from './errors.ts';
import { MemoryTrimmer } from './memory-trim.ts';
import { Sidecar } from './sidecar.ts';
import { resumeOptimizingCompilers } from './startup-tiering.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';
import { reportServing, shouldSupervise, superviseWorkers, workerCount } from './workers.ts';

const HELP = `meshlet - a service-mesh sidecar proxy

Usage:
  meshlet sidecar --config FILE     run a sidecar (YAML or JSON config; --config-env VAR reads it from VAR)
  meshlet validate --config FILE    check a config file and print the effective config
  meshlet demo                      run the demo mesh on loopback (no Consul needed)
  meshlet wait-ready [--admin URL] [--timeout 60s]   block until a sidecar's /ready is 200 (run before the app)
  meshlet tap [--admin URL] [--upstream X] [--status 5xx]   print live requests through a sidecar until Ctrl-C
  meshlet ca <init|token|serve|rotate|retire>   the built-in CA (meshlet ca --help)
  meshlet inject --k8s FILE | --compose FILE   add sidecars to manifests (meshlet.io/* annotations)
  meshlet webhook --cert F --key F  Kubernetes mutating admission webhook (POST /mutate)
  meshlet --help                    this text

Signals: SIGTERM/SIGINT drain gracefully (see shutdown.drainTimeout); SIGHUP reloads the --config file.`;

type Command = (args: string[]) => Promise<number>;

/** The config named by --config FILE, or the JSON/YAML in the env var named by --config-env (injected sidecars). */
async function configFromArgs(command: string, values: { config?: string | undefined; 'config-env'?: string | undefined }) {
  if (values.config) return loadConfigFile(values.config);
  const envName = values['config-env'];
  if (!envName) throw new UsageError(`meshlet ${command}: --config FILE (or --config-env VAR) is required`);
  const text = process.env[envName];
  if (text === undefined) throw new UsageError(`meshlet ${command}: environment variable ${envName} is not set`);
  return validateConfig(parseConfigEnvText(text, envName), `$${envName}`);
}

async function runSidecar(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'config-env': { type: 'string' } } });
  const config = await configFromArgs('sidecar', values);
  if (shouldSupervise(config.workers)) {
    // The primary only supervises; each worker runs the launcher and resumes once it serves.
    resumeOptimizingCompilers();
    // Workers get their whole drain, plus time to load and start, before the primary kills them.
    const forceKillAfterMs = config.shutdown.drainTimeout + 10_000;
    return superviseWorkers({ count: workerCount(config.workers), log: createLogger(config.logging.level), forceKillAfterMs });
  }
  const sidecar = new Sidecar(config);
  // Hot reload (docs: README "Hot reload"): on file change, SIGHUP and POST /reload; SIGHUP never kills the sidecar.
  const reloader = values.config ? installConfigReload(sidecar, values.config) : undefined;
  process.on('SIGHUP', () => {
    if (reloader) void reloader.reload('sighup');
    else sidecar.log.warn(`SIGHUP ignored: the config came from $${values['config-env']}, not a file`);
  });
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      sidecar.log.info({ signal }, 'signal received');
      void sidecar.stop().then(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    sidecar.stopped.then(resolve, resolve);
  });
  try {
    try {
      await sidecar.start();
    } finally {
      resumeOptimizingCompilers();
    }
    reportServing();
    if (config.trimMemory) {
      // Per serving process (each worker trims its own heap); stopped with the sidecar.
      const trimmer = new MemoryTrimmer();
      if (!trimmer.available) sidecar.log.info('trimMemory is on but node runs without --expose-gc (bin/meshlet.js and the image pass it): idle memory is not trimmed');
      trimmer.start();
      void sidecar.stopped.then(() => trimmer.stop());
    }
  } catch (err) {
    // e.g. a port already in use: say which, release what was bound, and exit non-zero without a stack.
    process.stderr.write(`meshlet sidecar: cannot start: ${(err as Error).message}\n`);
    await sidecar.stop();
    await flushLog(sidecar.log);
    return 1;
  }
  await stopped;
  await flushLog(sidecar.log);
  return 0;
}

/**
 * Waits until every log line reached stdout. pino writes asynchronously; exiting with a write still in
 * flight lets the exit-time flush overtake it, and the last lines (deregistered, stopped) come out of
 * order or not at all.
 */
function flushLog(log: Logger): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}

async function validate(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'config-env': { type: 'string' } } });
  const config = await configFromArgs('validate', values);
  // Same redaction as the admin /config: a validated config is often pasted into tickets.
  process.stdout.write(`${JSON.stringify(redactSecrets(config), null, 2)}\n`);
  return 0;
}

async function demo(args: string[]): Promise<number> {
  const { runDemo } = await import('../examples/demo.ts');
  return runDemo(args);
}

async function inject(args: string[]): Promise<number> {
  return (await import('../injector/cli.ts')).injectCommand(args);
}

async function webhook(args: string[]): Promise<number> {
  return (await import('../injector/cli.ts')).webhookCommand(args);
}

async function waitReady(args: string[]): Promise<number> {
  return (await import('./admin/wait-ready.ts')).waitReadyCommand(args);
}

async function tap(args: string[]): Promise<number> {
  return (await import('./admin/tap-cli.ts')).tapCommand(args);
}

async function ca(args: string[]): Promise<number> {
  const { runCa } = await import('../certs/cli.ts');
  return runCa(args);
}

const COMMANDS: Record<string, Command> = { sidecar: runSidecar, validate, demo, inject, webhook, ca, 'wait-ready': waitReady, tap };

class UsageError extends Error {}

/** Runs the CLI and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return command ? 0 : 2;
  }
  const run = COMMANDS[command];
  // The sidecar resumes them once it serves (runSidecar); other commands have nothing to wait for.
  if (command !== 'sidecar') resumeOptimizingCompilers();
  if (!run) {
    process.stderr.write(`meshlet: unknown command "${command}"\n\n${HELP}\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (err) {
    if (err instanceof MeshletError || err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return err instanceof UsageError ? 2 : 1;
    }
    throw err;
  }
}

/** Runs the CLI with this process's arguments and exits with its code. */
export async function runCli(): Promise<never> {
  const code = await main(process.argv.slice(2));
  // Listeners are closed by now; exit even if a stray timer (e.g. a discovery backoff) lingers.
  process.exit(code);
}

if (process.argv[1] && realpathSync(process.argv[1]) === import.meta.filename) await runCli();
