// Finding the browser: PUPPETEER_EXECUTABLE_PATH first, then the system paths, never a download.
import { describe, expect, it } from 'vitest';
import { findChromium, SYSTEM_CHROMIUM_PATHS } from './chromium';

describe('findChromium', () => {
  it('takes PUPPETEER_EXECUTABLE_PATH when it exists', () => {
    expect(findChromium({ PUPPETEER_EXECUTABLE_PATH: process.execPath }, [])).toBe(process.execPath);
  });

  it('refuses a PUPPETEER_EXECUTABLE_PATH that does not exist, naming it', () => {
    expect(() => findChromium({ PUPPETEER_EXECUTABLE_PATH: '/nonexistent/chrome' })).toThrow(/PUPPETEER_EXECUTABLE_PATH is '\/nonexistent\/chrome'/);
  });

  it('falls back to the first system path that exists', () => {
    expect(findChromium({}, ['/nonexistent/chromium', process.execPath])).toBe(process.execPath);
  });

  it('says how to install a browser when there is none', () => {
    expect(() => findChromium({}, ['/nonexistent/chromium'])).toThrow(/apt-get install chromium.*PUPPETEER_EXECUTABLE_PATH/s);
  });

  it('looks in the usual places, Debian\'s first', () => {
    expect(SYSTEM_CHROMIUM_PATHS[0]).toBe('/usr/bin/chromium');
    expect(SYSTEM_CHROMIUM_PATHS).toContain('/Applications/Google Chrome.app/Contents/MacOS/Google Chrome');
  });
});
