/** With mTLS on, the SPIFFE ID a sidecar registers in Consul is the one its certificate carries. */
import { afterEach, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startConsulServer } from '../fixtures/consul-server.ts';
import { createTestCa } from '../helpers/mesh-ca.ts';
import { eventually, startSidecar } from '../helpers/sidecar.ts';

describe('Consul registration with mTLS', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('registers the trust domain of the issued certificate when the config does not name one', async () => {
    const ca = await createTestCa({ trustDomain: 'corp.example' });
    cleanup.push(() => ca.cleanup());
    const consul = await startConsulServer();
    cleanup.push(() => consul.close());
    const sidecar: Sidecar = await startSidecar({
      service: { name: 'greeter', namespace: 'shop', port: 1 },
      security: { mtls: true, ca: { dir: ca.dir } },
      discovery: { consul: { address: consul.address, backoff: { min: '20ms', max: '100ms' } } },
    });
    cleanup.push(() => sidecar.stop());
    const registered = () => consul.requestsTo('/v1/agent/service/register').filter((r) => r.status === 200);
    await eventually('registered', () => registered().length > 0);
    expect(JSON.parse(registered()[0]!.body).Meta['spiffe-id']).toBe('spiffe://corp.example/ns/shop/svc/greeter');
  });
});
