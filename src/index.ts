// Library entry: embed gatehouse in a Node process.
export { Gateway, type GatewayOptions } from './http/server.js';
export { loadConfig } from './config/load.js';
export { ConfigError, ConfigIssue } from './config/issues.js';
export type { GatehouseConfig } from './config/types.js';
