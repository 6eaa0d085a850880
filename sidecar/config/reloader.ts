/**
 * Hot reload of the main config file. Triggers: the file changes (its directory is watched, like the
 * file catalog, so atomic saves and Kubernetes ConfigMap symlink swaps are seen), SIGHUP (wired by
 * main.ts) and admin `POST /reload` (loopback only). Each reload reads and validates the file into a
 * new frozen snapshot, refuses fields that need a restart, and applies the rest in place
 * (config/apply.ts). Any problem keeps the old config in force: one error log line naming the field
 * and file, a `configReload {ok: false}` event, and a 400 with the problems for the admin caller.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { isLoopback, sendJson } from '../admin/server.ts';
import { securityNameIssues } from '../security/install.ts';
import type { Sidecar } from '../sidecar.ts';
import { diffConfig, type ConfigDiff } from './diff.ts';
import { loadConfigFile } from './load.ts';
import type { MeshletConfig } from './schema.ts';

/** What set a reload off; the `configReload` event's source is `config:<trigger>`. */
export type ReloadTrigger = 'watch' | 'sighup' | 'admin';

export interface ReloadResult {
  readonly ok: boolean;
  /** Fields that changed (empty when the file says what is already in force). */
  readonly changed: readonly string[];
  /** Why the reload was refused (or, rarely, what failed after the switch). */
  readonly problems: readonly string[];
}

/** Editors save in bursts (truncate, write, rename); wait for the burst to settle before reading. */
export const RELOAD_SETTLE_MS = 100;

export class ConfigReloader {
  readonly file: string;
  readonly #sidecar: Sidecar;
  readonly #settleMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Text of the last file read by a watch-triggered reload: an event that changed nothing is ignored. */
  #lastText: string | undefined;
  /** Reloads run one at a time, in order. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(sidecar: Sidecar, file: string, settleMs = RELOAD_SETTLE_MS) {
    this.#sidecar = sidecar;
    this.file = resolve(file);
    this.#settleMs = settleMs;
  }

  /** Watches the file's directory (call once the sidecar serves). */
  start(): void {
    if (this.#watcher) return;
    try {
      this.#lastText = readFileSync(this.file, 'utf8');
    } catch {
      this.#lastText = undefined;
    }
    try {
      this.#watcher = watch(dirname(this.file), () => this.#schedule());
      this.#watcher.on('error', (err) => this.#sidecar.log.error({ err, file: this.file }, 'config file watch failed; SIGHUP and POST /reload still reload'));
    } catch (err) {
      this.#sidecar.log.error({ err, file: this.file }, 'cannot watch the config file directory; SIGHUP and POST /reload still reload');
    }
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.reload('watch'), this.#settleMs);
  }

  /** Reads the file and applies it; never rejects. */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    // A failure nobody foresaw is still a refused reload, and never blocks the reloads queued after it.
    const run = this.#queue.then(() => this.#reload(trigger).catch((err: unknown) => this.#refuse(trigger, [`reload failed: ${(err as Error).message}`])));
    this.#queue = run;
    return run;
  }

  async #reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const sidecar = this.#sidecar;
    const text = await readFile(this.file, 'utf8').catch(() => undefined);
    // Events for other files in the directory, or a save of text already seen: nothing to do.
    if (trigger === 'watch' && text === this.#lastText) return { ok: true, changed: [], problems: [] };
    this.#lastText = text;
    if (sidecar.state !== 'serving') return this.#refuse(trigger, [`the sidecar is ${sidecar.state}, not serving; nothing was reloaded`]);
    let next: Readonly<MeshletConfig>;
    try {
      next = await loadConfigFile(this.file);
    } catch (err) {
      return this.#refuse(trigger, (err as { problems?: string[] }).problems ?? [(err as Error).message]);
    }
    const source = basename(this.file);
    const diff = withUnboundUpstreams(diffConfig(sidecar.config, next), next, sidecar);
    const refused = [...diff.refused, ...securityNameIssues(next)].map((p) => `${p} (${source})`);
    if (refused.length > 0) return this.#refuse(trigger, refused);
    if (diff.changedFields.length === 0) {
      sidecar.log.info({ file: this.file, trigger }, 'config reloaded: nothing changed');
      return this.#report(trigger, { ok: true, changed: [], problems: [] });
    }
    if (sidecar.state !== 'serving') return this.#refuse(trigger, [`the sidecar is ${sidecar.state}, not serving; nothing was reloaded`]);
    let problems: string[];
    try {
      problems = await sidecar.applyConfig(next, diff);
    } catch (err) {
      return this.#refuse(trigger, [`${(err as Error).message} (${source})`]);
    }
    if (problems.length > 0) {
      sidecar.log.error({ file: this.file, trigger, problems }, `config reload applied with problems: ${problems.join('; ')}`);
      return this.#report(trigger, { ok: false, changed: diff.changedFields, problems });
    }
    sidecar.log.info({ file: this.file, trigger, changed: diff.changedFields }, 'config reloaded');
    return this.#report(trigger, { ok: true, changed: diff.changedFields, problems: [] });
  }

  #refuse(trigger: ReloadTrigger, problems: string[]): ReloadResult {
    this.#sidecar.log.error({ file: this.file, trigger, problems }, `config reload refused, the old config stays in force: ${problems.join('; ')}`);
    return this.#report(trigger, { ok: false, changed: [], problems });
  }

  #report(trigger: ReloadTrigger, result: ReloadResult): ReloadResult {
    this.#sidecar.events.emit('configReload', { source: `config:${trigger}`, ok: result.ok, ...(result.ok ? {} : { error: result.problems.join('; ') }) });
    return result;
  }
}

/**
 * An upstream left without a listener (a port freed by an earlier reload was taken before it could be
 * bound) is bound again by the next reload, even when its config did not change.
 */
function withUnboundUpstreams(diff: ConfigDiff, next: Readonly<MeshletConfig>, sidecar: Sidecar): ConfigDiff {
  const { added, removed, changed, rebound } = diff.upstreams;
  const unbound = next.upstreams.filter((u) => sidecar.ports.upstreams[u.name] === undefined && !added.includes(u.name) && !rebound.includes(u.name)).map((u) => u.name);
  if (unbound.length === 0) return diff;
  return {
    ...diff,
    upstreams: { added, removed, changed: changed.filter((name) => !unbound.includes(name)), rebound: [...rebound, ...unbound] },
    changedFields: [...diff.changedFields, ...unbound.map((name) => `upstreams.${name} (listener not bound: binding again)`)],
  };
}

/**
 * Makes `sidecar` reload `file` on change and on admin `POST /reload` (loopback only); the watch
 * starts once the sidecar serves and stops when it drains. Call before `start()`.
 */
export function installConfigReload(sidecar: Sidecar, file: string, settleMs?: number): ConfigReloader {
  const reloader = new ConfigReloader(sidecar, file, settleMs);
  sidecar.afterStart.push(() => reloader.start());
  sidecar.beforeDrain.push(async () => reloader.stop());
  sidecar.admin.route('POST', '/reload', async (req, res) => {
    // Like /shutdown: only the pod itself may change the running config, even with admin.address opened up.
    if (!isLoopback(req.socket.remoteAddress)) {
      sendJson(res, 403, { error: `POST /reload is allowed from loopback only, not from ${req.socket.remoteAddress}` });
      return;
    }
    const result = await reloader.reload('admin');
    sendJson(res, result.ok ? 200 : 400, { ...result, file: reloader.file });
  });
  return reloader;
}
