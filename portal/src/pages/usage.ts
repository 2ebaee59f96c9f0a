// Usage: requests and tokens by day (this month and the previous one), rate limit and quotas as gauges.
import type { UsageReport } from "bitnet-client";
import { formatDate, h } from "../dom.js";
import { barChart } from "../chart.js";
import { api } from "../session.js";

function monthStart(offset: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
}

function gauge(id: string, label: string, used: number, limit: number | null, note: string): HTMLElement {
  const meter = h("meter", { id, min: 0, max: limit ?? Math.max(1, used), value: used,
    low: limit ? limit * 0.7 : undefined, high: limit ? limit * 0.9 : undefined, optimum: 0 });
  return h("div", {}, h("label", { for: id }, label), meter,
    h("div", { class: "muted" }, `${used.toLocaleString()} of ${limit === null ? "unlimited" : limit.toLocaleString()} ${note}`));
}

export async function renderUsage(main: HTMLElement): Promise<void> {
  const from = monthStart(-1).toISOString();
  const [report, byOp, limits] = await Promise.all([
    api((c) => c.getAccountUsage({ from, groupBy: "day" })),
    api((c) => c.getAccountUsage({ from, groupBy: "operation" })),
    api((c) => c.getAccountLimits()),
  ]);
  // Every day of the range, zero where the report has no bucket; labels are MM-DD.
  const days = (r: UsageReport, pick: (b: UsageReport["buckets"][number]) => number) => {
    const byDay = new Map(r.buckets.map((b) => [b.key.slice(0, 10), pick(b)]));
    const points: { label: string; value: number }[] = [];
    for (let d = new Date(r.from); d < new Date(r.to); d = new Date(d.getTime() + 86_400_000)) {
      const key = d.toISOString().slice(0, 10);
      points.push({ label: key.slice(5), value: byDay.get(key) ?? 0 });
    }
    return points;
  };
  const rl = limits.rate_limit;
  main.replaceChildren(h("h1", {}, "Usage"),
    h("p", { class: "muted" }, `From ${formatDate(report.from)} to ${formatDate(report.to)} (this month and the previous one).`),
    h("p", { id: "usage-totals" }, `Requests: ${report.totals.requests}, prompt tokens: ${report.totals.prompt_tokens}, ` +
      `completion tokens: ${report.totals.completion_tokens}, compute units: ${report.totals.compute_units}`),
    h("h2", {}, "Requests by day"), barChart("Requests by day", days(report, (b) => b.requests), 7),
    h("h2", {}, "Tokens by day"), barChart("Tokens by day", days(report, (b) => b.prompt_tokens + b.completion_tokens), 7),
    h("h2", {}, "Requests by operation"), barChart("Requests by operation", byOp.buckets.map((b) => ({ label: b.key, value: b.requests }))),
    h("h2", {}, `Limits (tier ${limits.tier})`),
    gauge("rate-remaining", "Requests this hour (rate limit)", rl.requests_per_hour - rl.remaining, rl.requests_per_hour,
      `used; ${rl.remaining} left, resets ${formatDate(rl.reset_at)}`),
    ...limits.quotas.map((q, i) => gauge(`quota-${i}`, `Quota: ${q.name} (${q.period})`, q.used, q.limit,
      q.resets_at ? `resets ${formatDate(q.resets_at)}` : "")));
}
