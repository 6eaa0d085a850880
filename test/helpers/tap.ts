/** Reads a sidecar's GET /tap stream in tests: collects events as they arrive. */
import { request } from 'undici';
import { readServerSentEvents } from '../../sidecar/admin/tap-cli.ts';
import type { TapEvent } from '../../sidecar/admin/tap.ts';

export interface TapStream {
  readonly events: TapEvent[];
  /** Named events other than requests (`dropped`), with their data. */
  readonly notices: Array<{ event: string; data: string }>;
  close(): void;
}

/** Opens `${admin}/tap?query` and resolves once the stream has said hello (so the subscription is live). */
export async function openTap(admin: string, query = ''): Promise<TapStream> {
  const controller = new AbortController();
  const res = await request(`${admin}/tap${query ? `?${query}` : ''}`, { signal: controller.signal, bodyTimeout: 0 });
  if (res.statusCode !== 200) throw new Error(`GET /tap answered ${res.statusCode}: ${await res.body.text()}`);
  const events: TapEvent[] = [];
  const notices: Array<{ event: string; data: string }> = [];
  let hello!: () => void;
  const said = new Promise<void>((resolve) => (hello = resolve));
  void (async () => {
    try {
      for await (const e of readServerSentEvents(res.body)) {
        if (e.event === 'hello') hello();
        else if (e.event === 'message') events.push(JSON.parse(e.data) as TapEvent);
        else notices.push(e);
      }
    } catch {
      // aborted by close()
    }
  })();
  await said;
  return { events, notices, close: () => controller.abort() };
}
