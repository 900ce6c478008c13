/**
 * Says once, before the browser tests, which browsers they run in: Chromium always; Firefox where one
 * is found, else one line saying why it is left out and how to add it (never a silent skip).
 */
import { browserEngines, ENGINE_NAMES, findFirefox, firefoxVulkan } from './browsers';
import { findChromium } from './chromium';

export default function setup(): void {
  const engines = browserEngines();
  const firefox = findFirefox();
  const lines = [`browser tests: ${engines.map((e) => ENGINE_NAMES[e]).join(' and ')}`];
  if (engines.includes('chromium')) lines.push(`  Chromium: ${findChromium()} (WebGPU: Dawn; SwiftShader without a GPU)`);
  if ('path' in firefox) {
    if (engines.includes('firefox')) lines.push(`  Firefox: ${firefox.path} (WebGPU: wgpu; on ${firefoxVulkan().driver})`);
  } else {
    lines.push(`  Firefox: left out, ${firefox.missing}`);
  }
  if (process.env['BROWSERS']) lines.push(`  (BROWSERS=${process.env['BROWSERS']})`);
  console.log(lines.join('\n'));
}
