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
  const days = (r: UsageReport, pick: (b: UsageReport["buckets"][number]) => number) =>
    r.buckets.map((b) => ({ label: b.key, value: pick(b) }));
  const rl = limits.rate_limit;
  main.replaceChildren(h("h1", {}, "Usage"),
    h("p", { class: "muted" }, `From ${formatDate(report.from)} to ${formatDate(report.to)} (this month and the previous one).`),
    h("p", { id: "usage-totals" }, `Requests: ${report.totals.requests}, prompt tokens: ${report.totals.prompt_tokens}, ` +
      `completion tokens: ${report.totals.completion_tokens}, compute units: ${report.totals.compute_units}`),
    h("h2", {}, "Requests by day"), barChart("Requests by day", days(report, (b) => b.requests)),
    h("h2", {}, "Tokens by day"), barChart("Tokens by day", days(report, (b) => b.prompt_tokens + b.completion_tokens)),
    h("h2", {}, "Requests by operation"), barChart("Requests by operation", byOp.buckets.map((b) => ({ label: `     ${b.key}`, value: b.requests }))),
    h("h2", {}, `Limits (tier ${limits.tier})`),
    gauge("rate-remaining", "Requests left this hour", rl.requests_per_hour - rl.remaining, rl.requests_per_hour,
      `used; ${rl.remaining} left, resets ${formatDate(rl.reset_at)}`),
    ...limits.quotas.map((q, i) => gauge(`quota-${i}`, `Quota: ${q.name} (${q.period})`, q.used, q.limit,
      q.resets_at ? `resets ${formatDate(q.resets_at)}` : "")));
}
