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
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(issues.map(String).join('\n'));
  }
}

/** Collects issues for one file, turning node offsets into line:col. */
export class IssueList {
  readonly items: ConfigIssue[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  at(node: Node | null | undefined, message: string): void {
    this.atOffset(node?.range?.[0] ?? 0, message);
  }

  atOffset(offset: number, message: string): void {
    const { line, col } = this.lines.linePos(offset);
    this.items.push(new ConfigIssue(this.file, line, col, message));
  }
}
