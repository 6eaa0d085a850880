import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { z } from 'zod';
import { formatIssues, parseConfigText } from '../config/load.ts';
import { endpointSchema } from '../config/schema.ts';
import { serviceName } from '../config/fields.ts';
import { meshError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { makeEndpoint, type CatalogSnapshot, type DiscoveryProvider, type Endpoint, type ProviderStatus } from './types.ts';

const catalogSchema = z.strictObject({
  services: z.record(serviceName(), z.array(endpointSchema)).describe('service name -> its endpoints'),
});

/** Parses and validates catalog text; throws an Error naming each bad field and the file. */
export function parseCatalog(text: string, path: string): Map<string, Endpoint[]> {
  const source = basename(path);
  const raw = parseConfigText(text, path);
  const result = catalogSchema.safeParse(raw ?? {});
  if (!result.success) throw new Error(`invalid catalog:\n  ${formatIssues(result.error.issues, raw ?? {}, source).join('\n  ')}`);
  const services = new Map<string, Endpoint[]>();
  for (const [name, endpoints] of Object.entries(result.data.services)) services.set(name, endpoints.map((ep) => makeEndpoint(ep)));
  return services;
}

/** Editors save in bursts (truncate, write, rename); wait for the burst to settle before reading. */
const SETTLE_MS = 50;

/**
 * A YAML/JSON catalog file of services and endpoints, watched for changes. A broken edit is logged
 * and ignored: the last good catalog stays in force until the file is fixed.
 */
export class FileProvider implements DiscoveryProvider {
  readonly name = 'file';
  readonly #path: string;
  readonly #log: Logger;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #status: ProviderStatus = { provider: 'file', state: 'starting' };
  #emit: ((snapshot: CatalogSnapshot) => void) | undefined;
  #lastText: string | undefined;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  readonly #onReload: ((result: { ok: boolean; error?: string }) => void) | undefined;
  readonly #readText: (path: string) => Promise<string>;

  /**
   * `onReload` hears every change after the first load: applied, or rejected with the reason.
   * `readText` reads the file (tests slow it down to prove reloads cannot overlap).
   */
  constructor(
    path: string,
    log: Logger,
    onReload?: (result: { ok: boolean; error?: string }) => void,
    readText: (path: string) => Promise<string> = (file) => readFile(file, 'utf8'),
  ) {
    this.#path = resolve(path);
    this.#log = log.child({ provider: 'file', file: this.#path });
    this.#onReload = onReload;
    this.#readText = readText;
  }

  async start(emit: (snapshot: CatalogSnapshot) => void): Promise<void> {
    this.#emit = emit;
    // Watch the directory, not the file: atomic saves replace the inode and a file watch would go deaf.
    // A missing file is waited for; a missing directory is a config mistake.
    try {
      // Any entry of the directory may matter: Kubernetes ConfigMap volumes update by swapping a `..data`
      // symlink, and no event ever names the file itself. A reload of unchanged text is a no-op.
      this.#watcher = watch(dirname(this.#path), () => this.#scheduleReload());
    } catch (err) {
      throw meshError('CONFIG_INVALID', `discovery.file.path: cannot watch directory ${dirname(this.#path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
    }
    this.#watcher.on('error', (err) => this.#log.error({ err }, 'catalog watch failed'));
    await this.reload();
  }

  #scheduleReload(): void {
    clearTimeout(this.#timer);
    // A failure past parsing (applying the snapshot) is logged: a watcher must never end the process.
    this.#timer = setTimeout(() => this.reload().catch((err: unknown) => this.#log.error({ err }, 'applying the catalog failed')), SETTLE_MS);
  }

  /**
   * Reads the file now and emits it if it changed and is valid. Reloads never overlap: one asked for
   * while another runs is done right after it, so a slow older read can never win over a newer one.
   */
  reload(): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      do {
        this.#reloadAgain = false;
        await this.#reloadOnce();
      } while (this.#reloadAgain);
    })().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    let text: string;
    try {
      text = await this.#readText(this.#path);
    } catch (err) {
      this.#fail(`cannot read catalog: ${(err as Error).message}`);
      return;
    }
    if (text === this.#lastText) {
      // Back to the catalog in force (a broken edit was reverted): nothing to apply, but healthy again.
      if (this.#status.state === 'degraded') this.#status = { provider: this.name, state: 'ok', lastUpdate: new Date().toISOString() };
      return;
    }
    let services: Map<string, Endpoint[]>;
    try {
      services = parseCatalog(text, this.#path);
    } catch (err) {
      this.#fail((err as Error).message);
      return;
    }
    const firstLoad = this.#lastText === undefined;
    this.#lastText = text;
    this.#status = { provider: this.name, state: 'ok', lastUpdate: new Date().toISOString() };
    this.#log.info({ services: services.size }, 'catalog loaded');
    this.#emit?.({ provider: this.name, services });
    if (!firstLoad) this.#onReload?.({ ok: true });
  }

  #fail(message: string): void {
    const state = this.#status.state === 'starting' ? 'starting' : 'degraded';
    if (this.#status.lastError !== message) {
      this.#log.error(message);
      this.#onReload?.({ ok: false, error: message });
    }
    this.#status = { ...this.#status, state, lastError: message };
  }

  status(): ProviderStatus {
    return this.#status;
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#emit = undefined;
  }
}
