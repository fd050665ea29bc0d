// The upstream latency histogram: observed on every request, so observing is a bucket search and three additions.
import type { Histogram, Registry } from 'prom-client';

interface Series {
  /** Observations per bucket, not cumulative; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/** One exposed sample, in the shape prom-client's registry formats (what its own Histogram.get() returns). */
interface Sample {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

export interface LatencyRecorder {
  observe(seconds: number): void;
}

/**
 * A Prometheus histogram with one label, exposed through a prom-client registry exactly as a prom-client
 * Histogram would be (same series, same text). prom-client's observe() validates and hashes the label set on
 * every call, which made it the largest single item of gatehouse's own per-request CPU time; here each label
 * value gets its recorder once, at config compile time. The registry only needs name, get() and reset().
 */
export class LatencyHistogram<L extends string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: L,
    buckets: readonly number[],
    registry: Registry,
  ) {
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    registry.registerMetric(this as unknown as Histogram<L>);
  }

  /** The recorder of one label value; the same series for every call with that value. */
  recorder(value: string): LatencyRecorder {
    let s = this.series.get(value);
    if (!s) this.series.set(value, (s = { counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }));
    const series = s;
    const bounds = this.bounds;
    return {
      observe(seconds: number): void {
        if (!Number.isFinite(seconds)) return;
        let i = 0;
        while (i < bounds.length && seconds > bounds[i]) i++;
        series.counts[i]++;
        series.sum += seconds;
        series.count++;
      },
    };
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; values: Sample[]; aggregator: 'sum' }> {
    const values: Sample[] = [];
    for (const [value, s] of this.series) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += s.counts[i];
        values.push({ metricName: `${this.name}_bucket`, labels: { le: this.bounds[i], [this.label]: value }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', [this.label]: value }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: { [this.label]: value }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { [this.label]: value }, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }

  reset(): void {
    for (const s of this.series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
