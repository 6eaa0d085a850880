/** Child processes of a bench run: started pinned to CPUs, waited for, measured (RSS), stopped. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:net';
import { freePort } from '../../examples/demo.ts';

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** PIDs whose RSS is summed (a proxy may be more than one process, e.g. a pair). */
  readonly pid: number;
}

const running = new Set<ChildProcess>();

/** `cmd args` as an argv, under taskset when `cpus` (a list like "1") is given. */
export function pinnedArgv(cpus: string | undefined, cmd: string, args: readonly string[]): [string, ...string[]] {
  return cpus === undefined ? [cmd, ...args] : ['taskset', '-c', cpus, cmd, ...args];
}

/** Starts `cmd args` pinned to `cpus` (a taskset list like "1"), its output kept in `logFile`. */
export function start(name: string, cpus: string | undefined, cmd: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): Proc {
  const [file, ...argv] = pinnedArgv(cpus, cmd, args);
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  const log = createWriteStream(logFile);
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  running.add(child);
  child.once('exit', (code, signal) => {
    running.delete(child);
    if (!stopping.has(child)) process.stderr.write(`bench: ${name} exited early (code ${code}, signal ${signal}); see ${logFile}\n`);
  });
  return { name, child, pid: child.pid! };
}

const stopping = new Set<ChildProcess>();

/** Stops one process (SIGTERM, then SIGKILL after 3 s) and waits for its exit. */
export async function stop(proc: Proc): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  stopping.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/**
 * What a measuring tool (alloc, instructions) starts with: a scratch directory under results/tmp, the
 * CPU the load generator and backend share (CPU 0, the proxy gets CPU 1, when there are two), and
 * Ctrl-C killing every child.
 */
export function toolSetup(kind: string): { dir: string; pinned: boolean; loadCpu: string | undefined } {
  const dir = join(import.meta.dirname, '..', 'results', 'tmp', `${kind}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const pinned = cpus().length >= 2;
  process.on('SIGINT', () => {
    killAll();
    process.exit(130);
  });
  return { dir, pinned, loadCpu: pinned ? '0' : undefined };
}

/** A Meshlet checkout as the comparing tools take it: `DIR[=LABEL[=NODE_FLAGS]]`, the flags comma-separated. */
export function checkoutSpec(spec: string): { dir: string; label: string | undefined; nodeFlags: string[] } {
  const [dir, label, ...flagParts] = spec.split('=') as [string, string?, ...string[]];
  return { dir: resolve(dir), label, nodeFlags: flagParts.length > 0 ? flagParts.join('=').split(',') : [] };
}

/** Kills whatever is still running (used on errors and signals). */
export function killAll(): void {
  for (const child of running) {
    stopping.add(child);
    child.kill('SIGKILL');
  }
}

/** Resident set size of a process in bytes (Linux /proc), or undefined when it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Clock ticks per second for /proc/PID/stat times (100 on every Linux this runs on). */
const CLK_TCK = 100;

/** What the kernel counts for a process: CPU seconds, minor page faults, context switches of all its threads. */
export interface KernelCounters {
  readonly user: number;
  readonly system: number;
  /** Minor faults: pages the kernel had to map on first touch (a fresh heap page, a re-grown buffer). */
  readonly minorFaults: number;
  /** Voluntary (waited for I/O) plus involuntary (preempted) switches, summed over the threads. */
  readonly contextSwitches: number;
}

/** KernelCounters of a process so far (Linux /proc; threads that already exited are not in the switch count). */
export function kernelCounters(pid: number): KernelCounters {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): minflt is the 8th, utime and stime the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let contextSwitches = 0;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
      for (const match of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) contextSwitches += Number(match[1]);
    }
  } catch {
    // a thread ended between the listing and the read
  }
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK, minorFaults: Number(fields[7]), contextSwitches };
}

/** Direct children of a process, from the children file of each of its /proc tasks (Linux). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

/** RSS of a process plus all its descendants (a cluster primary and its workers). */
export function rssTreeBytes(pid: number): number | undefined {
  const own = rssBytes(pid);
  if (own === undefined) return undefined;
  return childPids(pid).reduce((sum, child) => sum + (rssTreeBytes(child) ?? 0), own);
}

/** Free loopback ports come from the demo's helper, so there is one implementation. */
export { freePort };

/** Resolves once something accepts connections on `port`, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a command to completion and returns its stdout (stderr appended on failure). */
export function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out + err);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err || out}`));
    });
  });
}

/** run(), pinned to `cpus` as start() pins. */
export function runPinned(cpus: string | undefined, cmd: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const [file, ...argv] = pinnedArgv(cpus, cmd, args);
  return run(file, argv, timeoutMs);
}
