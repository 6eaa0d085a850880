/**
 * `workers`: one sidecar served by several processes (node:cluster). The primary forks the workers,
 * which all run the same config; listeners are shared, so each connection lands on one worker. The
 * primary forwards SIGTERM/SIGINT, replaces a worker that crashes after it started serving, and stops
 * the whole sidecar when a worker exits on purpose (code 0, e.g. admin `POST /shutdown`) or fails before
 * serving (bad port, bad certificate: restarting would only loop). Admin API and metrics are per
 * worker: each request to them is answered by whichever worker accepted the connection.
 */
import process from 'node:process';
import type { Cluster, Worker } from 'node:cluster';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { Logger } from './telemetry/logger.ts';

export const DEFAULT_WORKERS = 1;
export const MAX_WORKERS = 64;
/** Pause before replacing a crashed worker, so a crash loop does not spin a core. */
export const WORKER_RESTART_DELAY_MS = 1000;

export const workersSchema = z
  .union([z.int().min(1).max(MAX_WORKERS), z.literal('auto')], { error: `expected an integer 1-${MAX_WORKERS} or "auto"` })
  .default(DEFAULT_WORKERS)
  .describe('Processes serving this sidecar (node:cluster): a number, or "auto" for one per CPU core (default 1). Admin API and metrics are per worker');

export type WorkersSetting = z.infer<typeof workersSchema>;

/**
 * node:cluster on first use: a single-process sidecar (the default) never needs it, and loading it
 * brings child_process and dgram along (about 0.5 MiB resident at idle).
 */
const requireBuiltin = createRequire(import.meta.url);
const cluster = (): Cluster => requireBuiltin('node:cluster') as Cluster;

/** How many processes a setting means on this machine. */
export function workerCount(setting: WorkersSetting, cores = availableParallelism()): number {
  return setting === 'auto' ? Math.max(1, Math.min(cores, MAX_WORKERS)) : setting;
}

/** True in the process that should fork workers instead of serving. */
export function shouldSupervise(setting: WorkersSetting): boolean {
  return workerCount(setting) > 1 && cluster().isPrimary;
}

const SERVING = 'meshlet:serving';
const DEFAULT_FORCE_KILL_MS = 30_000;

/** Tells the primary this worker is serving (no-op outside a worker). */
export function reportServing(): void {
  // Without an IPC channel this process cannot be a cluster worker: no need to load node:cluster to ask.
  if (process.send && cluster().isWorker) process.send({ type: SERVING });
}

export interface SupervisorOptions {
  readonly count: number;
  readonly log: Logger;
  readonly restartDelayMs?: number;
  /**
   * After asking workers to stop, SIGKILL those still running this much later: a worker stuck in its
   * drain must not keep the whole sidecar (and a Kubernetes pod) from terminating. Default: 30 s.
   */
  readonly forceKillAfterMs?: number;
}

/**
 * Runs in the primary: forks `count` workers (same command line) and resolves with the exit code once
 * all are gone after a signal, a deliberate worker exit, or a worker failing before it served.
 */
export function superviseWorkers(options: SupervisorOptions): Promise<number> {
  const { count, log } = options;
  const restartDelayMs = options.restartDelayMs ?? WORKER_RESTART_DELAY_MS;
  return new Promise<number>((resolve) => {
    const live = new Set<Worker>();
    const serving = new Set<Worker>();
    let stopping = false;
    let exitCode = 0;
    let restartTimers: NodeJS.Timeout[] = [];

    const fork = () => {
      const worker = cluster().fork();
      live.add(worker);
      worker.on('message', (message: unknown) => {
        if ((message as { type?: unknown } | null)?.type !== SERVING) return;
        serving.add(worker);
        if (serving.size === count) log.info({ workers: count, pids: [...serving].map((w) => w.process.pid) }, 'all workers serving');
      });
    };
    const stopAll = (code: number, why: string) => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      for (const timer of restartTimers) clearTimeout(timer);
      restartTimers = [];
      log.info({ reason: why }, 'stopping workers');
      for (const worker of live) worker.process.kill('SIGTERM');
      if (live.size === 0) return resolve(exitCode);
      const forceKill = setTimeout(() => {
        for (const worker of live) {
          log.error({ pid: worker.process.pid }, 'worker did not stop in time; killing it');
          worker.process.kill('SIGKILL');
        }
      }, options.forceKillAfterMs ?? DEFAULT_FORCE_KILL_MS);
      forceKill.unref();
    };

    cluster().on('exit', (worker, code, signal) => {
      live.delete(worker);
      const wasServing = serving.delete(worker);
      const pid = worker.process.pid;
      if (stopping) {
        if (live.size === 0) resolve(exitCode);
        return;
      }
      if (code === 0 && !signal) return stopAll(0, `worker ${pid} exited on purpose`);
      if (!wasServing) {
        log.error({ pid, code, signal }, 'worker failed before serving; stopping the sidecar');
        return stopAll(1, `worker ${pid} failed to start`);
      }
      log.warn({ pid, code, signal, restartInMs: restartDelayMs }, 'worker died; starting a replacement');
      const timer = setTimeout(() => {
        restartTimers = restartTimers.filter((t) => t !== timer);
        if (!stopping) fork();
      }, restartDelayMs);
      restartTimers.push(timer);
    });
    process.once('SIGTERM', () => stopAll(0, 'SIGTERM'));
    process.once('SIGINT', () => stopAll(0, 'SIGINT'));
    // Each worker reloads its --config file itself; SIGHUP to the primary reaches them all (and never kills it).
    process.on('SIGHUP', () => {
      for (const worker of live) worker.process.kill('SIGHUP');
    });
    log.info({ workers: count }, 'starting workers');
    for (let i = 0; i < count; i++) fork();
  });
}
