// Typed readers over YAML nodes: each read checks one value, reports a positioned error, and never throws.
import { isMap, isScalar, isSeq, type Node, type Pair, type YAMLMap } from 'yaml';
import { formatDuration, parseDuration } from './duration.js';
import { expandEnv, type Env } from './env.js';
import type { IssueList } from './issues.js';

export class ReadContext {
  constructor(
    readonly issues: IssueList,
    readonly env: Env,
  ) {}

  /** The scalar's value with environment variables expanded; non-scalars give undefined. */
  scalar(node: Node): unknown {
    if (!isScalar(node)) return undefined;
    const value = node.value;
    if (typeof value !== 'string') return value;
    return expandEnv(value, this.env, (name) =>
      this.issues.cause(node, `environment variable ${name} is not set (use \${${name}:-default} for a default)`),
    );
  }
}

type Maybe<T> = T | undefined;

/** Reads a mapping node; the keys it is never asked about are reported as unknown by done(). */
export class MapReader {
  private readonly asked = new Set<string>();

  constructor(
    readonly cx: ReadContext,
    readonly node: YAMLMap | null,
    readonly path: string,
    /** Where to point when the mapping itself is absent. */
    readonly anchor: Node | null,
  ) {}

  /** A reader for `node` if it is a mapping (or absent); reports and returns null otherwise. */
  static of(cx: ReadContext, node: Node | null | undefined, path: string, anchor: Node | null): MapReader | null {
    if (node == null || (isScalar(node) && node.value == null)) return new MapReader(cx, null, path, anchor);
    if (!isMap(node)) {
      cx.issues.at(node, `${path}: must be a mapping`);
      return null;
    }
    return new MapReader(cx, node, path, node);
  }

  private pair(key: string): Pair<Node, Node | null> | undefined {
    this.asked.add(key);
    return this.node?.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair<Node, Node | null> | undefined;
  }

  /** The value node of `key`, or null when absent or explicitly null. */
  get(key: string): Node | null {
    const value = this.pair(key)?.value ?? null;
    return value && isScalar(value) && value.value == null ? null : value;
  }

  /** Whether `key` is written at all, even with an empty value (`key:`, `key: ~`). */
  written(key: string): boolean {
    return this.pair(key) !== undefined;
  }

  has(key: string): boolean {
    return this.get(key) !== null;
  }

  keyPath(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  private missing(key: string): undefined {
    this.cx.issues.at(this.node ?? this.anchor, `${this.keyPath(key)}: required key is missing`);
    return undefined;
  }

  private read<T>(key: string, fallback: T | undefined, parse: (node: Node, path: string) => Maybe<T>): Maybe<T> {
    const node = this.get(key);
    if (node === null) return fallback === undefined ? this.missing(key) : fallback;
    return parse(node, this.keyPath(key));
  }

  str(key: string, fallback?: string): Maybe<string> {
    return this.read(key, fallback, (n, p) => readString(this.cx, n, p));
  }

  optionalStr(key: string): string | null | undefined {
    return this.has(key) ? this.str(key) : null;
  }

  int(key: string, fallback: number | undefined, min: number, max: number): Maybe<number> {
    return this.read(key, fallback, (n, p) => readInt(this.cx, n, p, min, max));
  }

  bool(key: string, fallback?: boolean): Maybe<boolean> {
    return this.read(key, fallback, (n, p) => readBool(this.cx, n, p));
  }

  /** A duration in milliseconds; `bounds` for a window (POSITIVE) or one that becomes a timer (TIMER). */
  duration(key: string, fallback?: number, bounds?: DurationBounds): Maybe<number> {
    return this.read(key, fallback, (n, p) => readDuration(this.cx, n, p, bounds));
  }

  oneOf<T extends string>(key: string, values: readonly T[], fallback?: T): Maybe<T> {
    return this.read(key, fallback, (n, p) => readOneOf(this.cx, n, p, values));
  }

  /** A list of strings; with `single`, a lone string is accepted as a one-item list. */
  strings(key: string, fallback?: string[], single = false): Maybe<string[]> {
    return this.read(key, fallback, (n, p) => readStrings(this.cx, n, p, single));
  }

  map(key: string): MapReader | null {
    return MapReader.of(this.cx, this.get(key), this.keyPath(key), this.node ?? this.anchor);
  }

  /** Items of a sequence value (absent: empty). */
  list(key: string): Node[] | undefined {
    const node = this.get(key);
    if (node === null) return [];
    if (!isSeq(node)) {
      this.cx.issues.at(node, `${this.keyPath(key)}: must be a list`);
      return undefined;
    }
    return node.items as Node[];
  }

  /** Free-form entries (names chosen by the user), in file order. */
  entries(): Array<[string, Node | null, Node]> {
    if (!this.node) return [];
    const out: Array<[string, Node | null, Node]> = [];
    for (const p of this.node.items) {
      const keyNode = p.key as Node;
      const written = isScalar(keyNode) ? String(keyNode.value) : '';
      this.asked.add(written);
      // `${NAME}` is expanded in a name as in any string (SPEC section 2), e.g. a tenant override keyed by env.
      const name = isScalar(keyNode) && typeof keyNode.value === 'string' ? String(this.cx.scalar(keyNode)) : written;
      out.push([name, (p.value as Node | null) ?? null, keyNode]);
    }
    return out;
  }

  /** Reports every key that was never read: unknown keys are errors, so a typo cannot disable a setting. */
  done(): void {
    if (!this.node) return;
    for (const p of this.node.items) {
      const keyNode = p.key as Node;
      const name = isScalar(keyNode) ? String(keyNode.value) : '?';
      if (!this.asked.has(name)) this.cx.issues.at(keyNode, `${this.keyPath(name)}: unknown key`);
    }
  }
}

export function readString(cx: ReadContext, node: Node, path: string): Maybe<string> {
  const v = cx.scalar(node);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  cx.issues.at(node, `${path}: must be a string`);
  return undefined;
}

export function readInt(cx: ReadContext, node: Node, path: string, min: number, max: number): Maybe<number> {
  const v = cx.scalar(node);
  const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max) return n;
  cx.issues.at(node, `${path}: must be a whole number from ${min} to ${max}`);
  return undefined;
}

export function readBool(cx: ReadContext, node: Node, path: string): Maybe<boolean> {
  const v = cx.scalar(node);
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  cx.issues.at(node, `${path}: must be true or false`);
  return undefined;
}

export interface DurationBounds {
  readonly min?: number;
  readonly max?: number;
}

export function readDuration(cx: ReadContext, node: Node, path: string, bounds: DurationBounds = {}): Maybe<number> {
  const ms = parseDuration(cx.scalar(node));
  if (ms === null) {
    cx.issues.at(node, `${path}: must be a duration such as 250ms, 30s, 5m, 1h, 1d or a number of seconds`);
    return undefined;
  }
  if (bounds.min !== undefined && ms < bounds.min) cx.issues.at(node, `${path}: must be ${bounds.min === 1 ? 'longer than 0' : `at least ${formatDuration(bounds.min)}`}`);
  else if (bounds.max !== undefined && ms > bounds.max) cx.issues.at(node, `${path}: must be at most ${formatDuration(bounds.max)}`);
  else return ms;
  return undefined;
}

export function readOneOf<T extends string>(cx: ReadContext, node: Node, path: string, values: readonly T[]): Maybe<T> {
  const v = cx.scalar(node);
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
  cx.issues.at(node, `${path}: must be one of ${values.join(', ')}`);
  return undefined;
}

export function readStrings(cx: ReadContext, node: Node, path: string, single: boolean): Maybe<string[]> {
  if (single && isScalar(node)) {
    const s = readString(cx, node, path);
    return s === undefined ? undefined : [s];
  }
  if (!isSeq(node)) {
    cx.issues.at(node, `${path}: must be a list${single ? ' or a string' : ''}`);
    return undefined;
  }
  const out: string[] = [];
  let ok = true;
  (node.items as Node[]).forEach((item, i) => {
    const s = readString(cx, item, `${path}[${i}]`);
    if (s === undefined) ok = false;
    else out.push(s);
  });
  return ok ? out : undefined;
}

/**
 * A table keyed by names from the config (policies, tenants, upstreams, header names): without a prototype, so
 * a name such as `constructor`, `toString` or `__proto__` is an entry like any other, never an inherited member.
 */
export function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}
