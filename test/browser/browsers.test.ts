// Finding Firefox and choosing the browsers: FIREFOX_EXECUTABLE_PATH first, then PATH, never a download;
// Firefox left out only where none exists; its Vulkan driver from WEBGPU_ADAPTER.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { browserEngines, findFirefox, firefoxVulkan } from './browsers';
import { findIcd } from '../../demo/node/adapters';

const bin = mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-bin-'));
afterAll(() => rmSync(bin, { recursive: true, force: true }));

/** An executable file named `name` in a fresh folder; returns the folder. */
function fakeExecutable(name: string): string {
  const dir = mkdtempSync(join(bin, 'dir-'));
  writeFileSync(join(dir, name), '#!/bin/sh\n');
  chmodSync(join(dir, name), 0o755);
  return dir;
}

describe('findFirefox', () => {
  it('takes FIREFOX_EXECUTABLE_PATH when it exists', () => {
    expect(findFirefox({ FIREFOX_EXECUTABLE_PATH: process.execPath, PATH: '' })).toEqual({ path: process.execPath });
  });

  it('refuses a FIREFOX_EXECUTABLE_PATH that does not exist, naming it', () => {
    expect(() => findFirefox({ FIREFOX_EXECUTABLE_PATH: '/nonexistent/firefox' }))
      .toThrow(/FIREFOX_EXECUTABLE_PATH is '\/nonexistent\/firefox', which does not exist/);
  });

  it('looks on PATH for firefox-esr before firefox', () => {
    const esr = fakeExecutable('firefox-esr');
    const plain = fakeExecutable('firefox');
    expect(findFirefox({ PATH: `${plain}:${esr}` })).toEqual({ path: join(esr, 'firefox-esr') });
    expect(findFirefox({ PATH: plain })).toEqual({ path: join(plain, 'firefox') });
  });

  it('passes over a file that is not executable', () => {
    const dir = mkdtempSync(join(bin, 'dir-'));
    writeFileSync(join(dir, 'firefox'), '');
    chmodSync(join(dir, 'firefox'), 0o644);
    expect(findFirefox({ PATH: dir })).toHaveProperty('missing');
  });

  it('says how to get one when there is none', () => {
    const found = findFirefox({ PATH: '' });
    if (!('missing' in found)) throw new Error(`expected no Firefox without PATH, found ${found.path}`);
    expect(found.missing).toMatch(/npm run setup.*FIREFOX_EXECUTABLE_PATH/);
  });
});

describe('browserEngines', () => {
  it('is Chromium and Firefox where Firefox exists, Chromium alone where it does not', () => {
    expect(browserEngines({ FIREFOX_EXECUTABLE_PATH: process.execPath })).toEqual(['chromium', 'firefox']);
    expect(browserEngines({ PATH: '' })).toEqual(['chromium']);
  });

  it('BROWSERS picks among them, and refuses a name it does not know', () => {
    const env = { FIREFOX_EXECUTABLE_PATH: process.execPath };
    expect(browserEngines({ ...env, BROWSERS: 'firefox' })).toEqual(['firefox']);
    expect(browserEngines({ ...env, BROWSERS: 'chromium, firefox' })).toEqual(['chromium', 'firefox']);
    expect(() => browserEngines({ ...env, BROWSERS: 'safari' })).toThrow(/BROWSERS names safari: use chromium, firefox/);
  });
});

describe('firefoxVulkan', () => {
  it('points Firefox at the CPU driver WEBGPU_ADAPTER names, where it is installed', () => {
    for (const kind of ['lavapipe', 'swiftshader'] as const) {
      const icd = findIcd(kind);
      if (icd) expect(firefoxVulkan({ WEBGPU_ADAPTER: kind })).toEqual({ icd, driver: kind === 'lavapipe' ? 'lavapipe' : 'SwiftShader' });
      else expect(() => firefoxVulkan({ WEBGPU_ADAPTER: kind })).toThrow(/npm run setup/);
    }
  });

  it('leaves the loader to choose with auto and hardware, naming an ICD the caller set', () => {
    expect(firefoxVulkan({ WEBGPU_ADAPTER: 'auto' }).icd).toBeUndefined();
    expect(firefoxVulkan({ WEBGPU_ADAPTER: 'hardware' }).icd).toBeUndefined();
    expect(firefoxVulkan({ VK_ICD_FILENAMES: '/usr/share/vulkan/icd.d/lvp_icd.json' })).toEqual({ driver: 'lavapipe' });
  });
});
