// Never download a browser on install: tests use the system Chromium
// (PUPPETEER_EXECUTABLE_PATH, else /usr/bin/chromium and friends; see test/browser/chromium.ts).
module.exports = { skipDownload: true };
