// The deployment examples cannot be run here (no Docker engine): check they parse, load, and agree with the Dockerfile.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { writeTempFile } from './support/harness.js';

const dockerfile = readFileSync('Dockerfile', 'utf8');
const configPathInImage = /"--config", "([^"]+)"/.exec(dockerfile)?.[1];

t.test('the Dockerfile is multi-stage, non-root, with a healthcheck and gatehouse serve', async (t) => {
  t.equal(configPathInImage, '/etc/gatehouse/gatehouse.yaml');
  t.equal(dockerfile.match(/^FROM /gm)?.length, 2);
  t.match(dockerfile, /^USER node$/m);
  t.match(dockerfile, /^HEALTHCHECK .*\n.*\/healthz/m);
  t.match(dockerfile, /^ENTRYPOINT \["gatehouse", "serve"/m);
  t.match(dockerfile, /npm ci --omit=dev/);
});

t.test('the compose example mounts its config where the image reads it, and that config is valid', async (t) => {
  const compose = parse(readFileSync('examples/compose/docker-compose.yaml', 'utf8'));
  const g = compose.services['gatehouse-1'];
  t.same(compose.services['gatehouse-2'], g, 'both replicas share one definition');
  t.ok(g.volumes.some((v: string) => v.endsWith(`:${configPathInImage}:ro`)));
  const config = loadConfig('examples/compose/gatehouse.yaml', { UPSTREAM_URL: 'http://upstream:3000', REDIS_URL: 'redis://redis:6379' });
  t.equal(config.rateLimit.store, 'redis');
  t.equal(config.rateLimit.redis.url, 'redis://redis:6379');
});

t.test('the Kubernetes sidecar mounts its ConfigMap where the image reads it, and the embedded config is valid', async (t) => {
  const docs = readFileSync('examples/kubernetes/sidecar.yaml', 'utf8').split(/^---$/m).map((d) => parse(d));
  const configMap = docs.find((d) => d.kind === 'ConfigMap');
  const deployment = docs.find((d) => d.kind === 'Deployment');
  const sidecar = deployment.spec.template.spec.containers.find((c: { name: string }) => c.name === 'gatehouse');
  const mount = sidecar.volumeMounts[0].mountPath;
  t.equal(`${mount}/gatehouse.yaml`, configPathInImage);
  t.equal(sidecar.readinessProbe.httpGet.path, '/readyz');
  const path = writeTempFile('gatehouse.yaml', configMap.data['gatehouse.yaml']);
  const config = loadConfig(path, { REDIS_URL: 'redis://redis:6379' });
  t.equal(config.auth.jwt.providers[0].jwksUrl, 'https://auth.example.com/.well-known/jwks.json');
});
