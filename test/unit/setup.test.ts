/**
 * `npm run setup` (scripts/setup.sh): the archive a suite is added from comes from the machine's own
 * apt sources (deb822 or one-line), never from a host written in a file; off Debian it installs nothing
 * and says what to install. These runs install nothing: they stop before any apt-get.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SETUP = join(ROOT, 'scripts/setup.sh');
const scratch = mkdtempSync(join(tmpdir(), 'webgpu-rmsprop-setup-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** An apt configuration folder with these files (paths relative to it). */
function aptDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(scratch, 'apt-'));
  mkdirSync(join(dir, 'sources.list.d'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function setup(args: string[], env: Record<string, string>) {
  const r = spawnSync('bash', [SETUP, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Made-up hosts: the script must echo whatever the machine's sources say.
describe('setup: the archive of a suite, from the apt sources', () => {
  it('reads a deb822 stanza whose Suites name the release, not its -security or -updates suites', () => {
    const dir = aptDir({
      'sources.list.d/a.sources': [
        'Types: deb', 'URIs: http://security.mirror.test/debian-security', 'Suites: bookworm-security',
        'Components: main', '',
        'Types: deb', 'URIs: http://mirror.test/debian http://other.test/debian', 'Suites: bookworm bookworm-updates',
        'Components: main', '',
      ].join('\n'),
    });
    const r = setup(['--archive-uri', 'bookworm'], { SETUP_APT_DIR: dir });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('http://mirror.test/debian');
  });

  it('reads a one-line entry, with options and comments', () => {
    const dir = aptDir({
      'sources.list': [
        '# deb http://commented.test/debian bookworm main',
        'deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] https://list.test/debian bookworm main contrib',
      ].join('\n'),
    });
    const r = setup(['--archive-uri', 'bookworm'], { SETUP_APT_DIR: dir });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('https://list.test/debian');
  });

  it('fails, saying so, where no source names the suite', () => {
    const dir = aptDir({ 'sources.list': 'deb http://list.test/debian trixie main\n' });
    const r = setup(['--archive-uri', 'bookworm'], { SETUP_APT_DIR: dir });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no apt source for Debian's bookworm suite/);
  });
});

describe('setup: off Debian', () => {
  it('installs nothing and lists what to install', () => {
    const osRelease = join(scratch, 'os-release');
    writeFileSync(osRelease, 'ID=fedora\nPRETTY_NAME="Fedora Linux 41"\n');
    const r = setup([], { SETUP_OS_RELEASE: osRelease });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/not Debian \(Fedora Linux 41\), so nothing was installed/);
    expect(r.stderr).toMatch(/Vulkan loader.*lavapipe.*Chromium.*Firefox/s);
  });
});

describe('no archive host in any file', () => {
  it('names no Debian or Ubuntu archive host in a tracked file', () => {
    const r = spawnSync('git', ['grep', '-nIE', String.raw`(deb|security|ftp[0-9.a-z]*)\.debian\.org|archive\.ubuntu\.com`],
      { cwd: ROOT, encoding: 'utf8' });
    if (r.status === 128 || r.error) throw new Error(`git grep failed: ${r.stderr || r.error?.message}`);
    expect(r.stdout, 'archive hosts written into files: take them from the machine\'s apt sources').toBe('');
  });
});
