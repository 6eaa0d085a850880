import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { adminUrl, startSidecar } from '../helpers/sidecar.ts';

describe('admin API against browser attacks', () => {
  let sidecar: Sidecar | undefined;
  afterEach(async () => {
    await sidecar?.stop();
  });

  it('refuses a DNS-rebound Host and a cross-site POST /shutdown, and keeps serving', async () => {
    sidecar = await startSidecar({ service: { name: 'web', port: 8080 } });
    const rebound = await request(`${adminUrl(sidecar)}/config`, { headers: { host: 'attacker.example' } });
    expect(rebound.statusCode).toBe(403);
    expect(await rebound.body.text()).not.toContain('"service"');
    const crossSite = await request(`${adminUrl(sidecar)}/shutdown`, { method: 'POST', headers: { origin: 'https://attacker.example' } });
    expect(crossSite.statusCode).toBe(403);
    await crossSite.body.dump();
    expect(sidecar.state).toBe('serving');
    const own = await request(`${adminUrl(sidecar)}/ready`);
    expect(own.statusCode).toBe(200);
    await own.body.dump();
  });
});
