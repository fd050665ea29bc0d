// Config errors with their place in the file: every one is collected, then all are reported at once.
import type { LineCounter, Node } from 'yaml';

export class ConfigIssue {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly message: string,
  ) {}
  toString(): string {
    return `${this.file}:${this.line}:${this.col} ${this.message}`;
  }
}

/** Thrown by loadConfig when the file is invalid; carries every issue. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(issues.map(String).join('\n'));
  }
}

/** Collects issues for one file, turning node offsets into line:col. */
export class IssueList {
  readonly items: ConfigIssue[] = [];
  /** Offsets of values already reported as unusable (an unset variable): every later complaint there is a consequence. */
  private readonly settled = new Set<number>();
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  at(node: Node | null | undefined, message: string): void {
    const offset = node?.range?.[0] ?? 0;
    if (!this.settled.has(offset)) this.atOffset(offset, message);
  }

  /** Reports the root cause at `node` and silences the follow-on errors about the same value. */
  cause(node: Node, message: string): void {
    const offset = node.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    // The same value may be read twice (e.g. checked, then used): one report is enough.
    if (!this.items.some((i) => i.line === line && i.col === col && i.message === message)) this.atOffset(offset, message);
    this.settled.add(offset);
  }

  atOffset(offset: number, message: string): void {
    // A file that could not be read has no lines: point at its start.
    const { line, col } = this.lines.lineStarts.length ? this.lines.linePos(offset) : { line: 1, col: 1 };
    this.items.push(new ConfigIssue(this.file, line, col, message));
  }
}
