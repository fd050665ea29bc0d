// `npm start`: a small echo upstream plus gatehouse with config.example.yaml, and ready-to-paste curl commands.
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { loadConfig } from './config/load.js';
import { ConfigError } from './config/issues.js';
import { Gateway } from './http/server.js';

/** The clear values of the demo keys whose hashes are in config.example.yaml. Public by design: demo only. */
export const DEMO_KEYS = {
  admin: 'gh_demo__JSN4aCPFbS1itJ-bSskKuBYzN1o2aloqndV2lKt5VQ',
  readOnly: 'gh_demo_ro_p7UeOraUZuZjCv9iY9WIX_omgNnDKS9As5Umhv95GPo',
};

/** Answers every request with what it received, so you can see the identity headers gatehouse injects. */
export function createEchoUpstream() {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ upstream: 'demo', method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body + '\n');
    });
  });
}

async function main(): Promise<void> {
  const file = process.argv[2] ?? fileURLToPath(new URL('../config.example.yaml', import.meta.url));
  let config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) for (const issue of err.issues) console.error(String(issue));
    process.exit(1);
  }
  const upstreamUrl = new URL(config.upstreams.default.url);
  const upstream = createEchoUpstream();
  await new Promise<void>((resolve, reject) => upstream.once('error', reject).listen(Number(upstreamUrl.port), upstreamUrl.hostname, resolve));
  const gateway = new Gateway(config);
  const { port, adminPort } = await gateway.listen();
  const provider = config.auth.jwt.providers[0];
  const jwt = provider?.secret
    ? await new SignJWT({ org_id: 'acme', role: 'admin', scope: 'reports:read', email: 'ada@example.com' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer(provider.issuer)
        .setAudience(provider.audience[0])
        .setSubject('ada')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(provider.secret))
    : null;
  const base = `http://127.0.0.1:${port}`;
  console.log(`
gatehouse demo: proxy on ${base}, demo upstream on ${upstreamUrl.origin}${adminPort ? `, admin on http://127.0.0.1:${adminPort}` : ''}

Try it (the demo keys are in config.example.yaml as hashes; never use them for real):
  curl -i ${base}/api/reports/q3 -H 'Authorization: Bearer ${DEMO_KEYS.admin}'
  curl -i ${base}/api/auth/verify -H 'X-API-Key: ${DEMO_KEYS.readOnly}'
  curl -i -X POST ${base}/api/orders -H 'X-API-Key: ${DEMO_KEYS.readOnly}'      # 403: read-only key
  curl -i ${base}/api/orders                                                     # 401: no credential${jwt ? `\n  curl -i ${base}/api/reports/q3 -H 'Authorization: Bearer ${jwt}'` : ''}
  curl -s http://127.0.0.1:${adminPort ?? 9901}/metrics | grep gatehouse_requests_total

Ctrl-C stops both.
`);
  const stop = () => {
    upstream.close();
    gateway.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
