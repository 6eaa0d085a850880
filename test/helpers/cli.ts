/**
 * Runs the real `meshlet` CLI as a child process (`node sidecar/main.ts ...`), the way users and
 * containers run it, and reads what it reports: bound ports from its "sidecar serving" log line,
 * its exit code and output, and its memory from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { BoundPorts } from '../../sidecar/sidecar.ts';

export const MAIN = fileURLToPath(new URL('../../sidecar/main.ts', import.meta.url));

export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything written so far. */
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
}

/** Starts `node sidecar/main.ts ...args` with output captured. */
export function runCli(args: readonly string[], options: { cwd?: string } = {}): CliProcess {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/**
 * Starts a CLI sidecar on `configPath` and resolves with its bound ports once it logs "sidecar serving"
 * (so the config needs `logging.level` info or lower; ports may be 0).
 */
export async function startCliSidecar(configPath: string, timeoutMs = 20_000): Promise<CliProcess & { ports: BoundPorts }> {
  const proc = runCli(['sidecar', '--config', configPath]);
  const ports = await new Promise<BoundPorts>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`sidecar did not report serving within ${timeoutMs} ms; stderr: ${proc.stderr()}`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      proc.child.stdout!.off('data', onData);
      reject(err);
    };
    const onData = () => {
      for (const line of proc.stdout().split('\n')) {
        if (!line.includes('"sidecar serving"')) continue;
        clearTimeout(timer);
        proc.child.stdout!.off('data', onData);
        resolve((JSON.parse(line) as { ports: BoundPorts }).ports);
        return;
      }
    };
    proc.child.stdout!.on('data', onData);
    void proc.exited.then((code) => fail(new Error(`sidecar exited (${code}) before serving; stderr: ${proc.stderr()}`)));
  });
  return { ...proc, ports };
}

/** A field of /proc/PID/status in bytes (VmRSS: resident now; VmHWM: peak resident since start). */
export async function procMemory(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Sends SIGTERM (if still running) and waits for the exit. */
export async function stopCli(proc: CliProcess): Promise<number | string> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
  return proc.exited;
}

/** Whether a process with this pid still exists (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
