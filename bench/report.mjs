// Benchmark report: medians, the results table, and the targets gatehouse is held to (relative to scenario 2).

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** req/s of a scenario as a share of the bare undici proxy's, and p99 of 4 against 2's. */
const TARGETS = [
  { id: '4', what: 'req/s', min: 0.85 },
  { id: '5', what: 'req/s', min: 0.75 },
  { id: '6', what: 'req/s', min: 0.85 },
  { id: '7', what: 'req/s', min: 0.6 },
  { id: '4', what: 'p99', max: 1.5 },
];

export function checkTargets(summary) {
  const byId = new Map(summary.map((s) => [s.id, s]));
  return TARGETS.flatMap((t) => {
    const s = byId.get(t.id);
    if (!s) return [];
    const value = t.what === 'p99' ? s.p99RatioToBare : s.ratioToBare;
    const ok = t.min !== undefined ? value >= t.min : value <= t.max;
    const bound = t.min !== undefined ? `>= ${t.min}x` : `<= ${t.max}x`;
    return [{ ...t, value, ok, text: `(${t.id}) ${t.what} ${value.toFixed(2)}x of (2), target ${bound}: ${ok ? 'met' : 'MISSED'}` }];
  });
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

export function formatTable(summary, { notes = [], loadBefore, loadAfter } = {}) {
  const header = ['#', 'scenario', 'req/s', 'x(2)', 'p50 ms', 'p99 ms', 'p99 x(2)', 'CPU µs/req', 'CPU %', 'RSS MiB', 'cache hit', 'other load', 'errors'];
  const rows = summary.map((s) => [
    s.id,
    s.label,
    fmt(s.rps),
    fmt(s.ratioToBare, 2),
    fmt(s.p50Ms, 2),
    fmt(s.p99Ms, 2),
    fmt(s.p99RatioToBare, 2),
    fmt(s.cpuUsPerReq, 1),
    fmt(s.cpuShare * 100, 0),
    fmt(s.rssMiB, 1),
    s.tokenCacheHitRatio === null ? '' : `${fmt(s.tokenCacheHitRatio * 100, 1)}%`,
    fmt(s.otherLoadMax, 2),
    s.non2xx + s.socketErrors ? `${s.non2xx} non-2xx, ${s.socketErrors} socket` : '0',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const left = new Set([1, 12]);
  const line = (cells) => cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line), ''];
  const h3 = summary.find((s) => s.id === '2b');
  if (h3) out.push(`engines: http-proxy-3 / undici dispatch (2b / 2) = ${fmt(h3.ratioToBare, 2)}x req/s, p99 ${fmt(h3.p99RatioToBare, 2)}x`);
  const stream = summary.find((s) => s.id === '2s');
  if (stream) {
    out.push(`undici APIs: Pool.stream / Pool.dispatch (2s / 2) = ${fmt(stream.ratioToBare, 2)}x req/s; against 2s as the baseline (earlier runs), gatehouse reaches:`);
    const vsStream = summary.filter((s) => /^[3-8]$/.test(s.id)).map((s) => `(${s.id}) ${fmt(s.rps / stream.rps, 2)}x`);
    if (vsStream.length) out.push(`  ${vsStream.join('  ')}`);
  }
  const contract = summary.find((s) => s.id === '2h');
  if (contract) {
    out.push(`header contract: the bare proxy sending gatehouse's headers of 4 (2h / 2) = ${fmt(contract.ratioToBare, 2)}x req/s: the most any proxy keeping SPEC's headers gets; against 2h, gatehouse reaches:`);
    const vsContract = summary.filter((s) => /^[4-8]$/.test(s.id)).map((s) => `(${s.id}) ${fmt(s.rps / contract.rps, 2)}x`);
    if (vsContract.length) out.push(`  ${vsContract.join('  ')}`);
  }
  for (const t of checkTargets(summary)) out.push(`target ${t.text}`);
  if (loadBefore) out.push(`load average before ${loadBefore.join(' ')}, after ${loadAfter?.join(' ') ?? '?'}`);
  for (const n of notes) out.push(`note: ${n}`);
  return out.join('\n');
}
