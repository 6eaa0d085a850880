import { describe, expect, it } from 'vitest';
import { browserGuardRefusal } from '../../sidecar/admin/browser-guard.ts';

describe('admin browser guard', () => {
  it('answers loopback Host names on a loopback-bound admin', () => {
    for (const host of ['127.0.0.1:15000', 'localhost:15000', 'localhost', '[::1]:15000', '127.8.9.10']) {
      expect(browserGuardRefusal('GET', { host }, true), host).toBeUndefined();
    }
    expect(browserGuardRefusal('GET', {}, true)).toBeUndefined();
  });

  it('refuses a rebinding Host name on a loopback-bound admin, but not when bound elsewhere on purpose', () => {
    expect(browserGuardRefusal('GET', { host: 'evil.example:15000' }, true)).toMatch(/Host "evil\.example:15000" is not a loopback name/);
    expect(browserGuardRefusal('GET', { host: '127.0.0.1.evil.example' }, true)).toMatch(/not a loopback name/);
    expect(browserGuardRefusal('GET', { host: 'sidecar.internal:15000' }, false)).toBeUndefined();
  });

  it('refuses cross-origin state changes and allows same-origin ones', () => {
    expect(browserGuardRefusal('POST', { host: '127.0.0.1:15000', origin: 'https://evil.example' }, true)).toMatch(/cross-origin POST from https:\/\/evil\.example refused/);
    expect(browserGuardRefusal('POST', { host: '127.0.0.1:15000', origin: 'null' }, true)).toMatch(/cross-origin/);
    expect(browserGuardRefusal('POST', { host: '127.0.0.1:15000', origin: 'http://127.0.0.1:15000' }, true)).toBeUndefined();
    expect(browserGuardRefusal('POST', { host: '127.0.0.1:15000' }, true)).toBeUndefined();
    expect(browserGuardRefusal('GET', { host: '127.0.0.1:15000', origin: 'https://evil.example' }, true)).toBeUndefined();
  });
});
