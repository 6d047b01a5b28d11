// A Node workload with a known hot function, profiled by the real Pyroscope Node SDK (tests/server/test_pyroscope_sdk.py).
const Pyroscope = require('@pyroscope/nodejs');
const [server, token, seconds] = process.argv.slice(2);
Pyroscope.init({ appName: 'node.demo', serverAddress: server, basicAuthUser: 'anyone', basicAuthPassword: token,
                 tags: { region: 'eu' }, tenantID: 'acme', flushIntervalMs: 3000 });
Pyroscope.start();
function hotSpin() { let s = 0; for (let i = 0; i < 2e6; i++) s += (i * i) % 7; return s; }
function coldSpin() { let s = 0; for (let i = 0; i < 5e5; i++) s += i % 3; return s; }
const end = Date.now() + Number(seconds) * 1000;
function loop() {
  const t = Date.now();
  while (Date.now() - t < 50) { hotSpin(); coldSpin(); }
  if (Date.now() < end) setImmediate(loop); else Pyroscope.stop().then(() => process.exit(0));
}
loop();
