// Reload on SIGHUP or when the config or keys file changes: validate the new files fully, then swap the plan.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { loadConfig } from './config/load.js';
import { ConfigError } from './config/issues.js';
import { pendingRestart, type Gateway } from './http/server.js';

const DEBOUNCE_MS = 200;

export type ReloadOutcome = 'ok' | 'invalid' | 'restart_required';

export function reloadFrom(gateway: Gateway, configPath: string): ReloadOutcome {
  const { logger, metrics } = gateway.runtime;
  try {
    const config = loadConfig(configPath);
    const outcome = gateway.reload(config);
    if (outcome === 'restart_required') {
      // The plan now holds the running values of those settings: what the file changes of them still waits.
      const settings = pendingRestart(config, gateway.plan.config);
      logger.warn({ settings, routes: config.routes.length }, 'config reloaded, but for settings that need a restart: they keep their running values');
    } else logger.info({ routes: config.routes.length }, 'config reloaded');
    return outcome;
  } catch (err) {
    metrics.reloads.inc({ outcome: 'invalid' });
    const errors = err instanceof ConfigError ? err.issues.map(String) : [String((err as Error).message)];
    logger.error({ errors }, 'config reload refused; keeping the running config');
    return 'invalid';
  }
}

/**
 * Watches the folders of the config and keys files (editors and Kubernetes replace files rather than
 * writing them in place, which a watch on the file itself would miss) and reloads, debounced.
 */
export function watchConfig(gateway: Gateway, configPath: string): () => void {
  let timer: NodeJS.Timeout | null = null;
  let watchers: FSWatcher[] = [];
  const arm = () => {
    for (const w of watchers) w.close();
    const files = [configPath, gateway.plan.config.auth.apiKeys?.file].filter((f): f is string => !!f);
    watchers = [...new Set(files.map((f) => dirname(f)))].map((dir) =>
      watch(dir, (_event, name) => {
        // Kubernetes swaps a `..data` symlink rather than touching the mounted file itself.
        const changed = name?.toString();
        if (changed && !changed.startsWith('..data') && !files.some((f) => basename(f) === changed)) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          timer = null;
          reloadFrom(gateway, configPath);
          arm();
        }, DEBOUNCE_MS);
      }),
    );
  };
  arm();
  return () => {
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
