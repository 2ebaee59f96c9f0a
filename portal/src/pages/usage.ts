// Usage: requests, tokens and compute units by day and by operation, for this month and the
// previous one (a tab each); the rate limit and every quota as gauges.
import type { UsageBucket, UsageReport } from "bitnet-client";
import { formatDate, h } from "../dom.js";
import { barChart } from "../chart.js";
import { api } from "../session.js";

type Point = { label: string; value: number };
type Measure = { name: string; pick: (b: UsageBucket) => number };

const MEASURES: Measure[] = [
  { name: "Requests", pick: (b) => b.requests },
  { name: "Tokens", pick: (b) => b.prompt_tokens + b.completion_tokens },
  { name: "Compute units", pick: (b) => Math.round(b.compute_units * 1000) / 1000 },
];

/** Midnight UTC on the first day of this month plus `offset` months. */
function monthStart(offset: number): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
}

/** Every day of the report's range, zero where it has no bucket; labels are MM-DD. */
function days(r: UsageReport, pick: Measure["pick"]): Point[] {
  const byDay = new Map(r.buckets.map((b) => [b.key.slice(0, 10), pick(b)]));
  const points: Point[] = [];
  for (let d = new Date(r.from); d < new Date(r.to); d = new Date(d.getTime() + 86_400_000)) {
    const key = d.toISOString().slice(0, 10);
    points.push({ label: key.slice(5), value: byDay.get(key) ?? 0 });
  }
  return points;
}

interface Month { title: string; byDay: UsageReport; byOperation: UsageReport }

async function month(offset: number): Promise<Month> {
  const from = monthStart(offset).toISOString();
  const to = monthStart(offset + 1).toISOString();
  const [byDay, byOperation] = await Promise.all([
    api((c) => c.getAccountUsage({ from, to, groupBy: "day" })),
    api((c) => c.getAccountUsage({ from, to, groupBy: "operation" })),
  ]);
  const title = monthStart(offset).toLocaleDateString(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
  return { title, byDay, byOperation };
}

function panel(m: Month, id: string): HTMLElement {
  const t = m.byDay.totals;
  const charts = MEASURES.flatMap((measure) => [
    h("h3", {}, `${measure.name} by day`), barChart(`${measure.name} by day, ${m.title}`, days(m.byDay, measure.pick), 7),
    h("h3", {}, `${measure.name} by operation`),
    barChart(`${measure.name} by operation, ${m.title}`, m.byOperation.buckets.map((b) => ({ label: b.key, value: measure.pick(b) }))),
  ]);
  return h("section", { id, role: "tabpanel", "aria-label": m.title },
    h("p", { id: `${id}-totals`, class: "usage-totals" }, `${m.title}: requests: ${t.requests}, prompt tokens: ${t.prompt_tokens}, ` +
      `completion tokens: ${t.completion_tokens}, compute units: ${Math.round(t.compute_units * 1000) / 1000}, errors: ${t.errors}`),
    ...charts);
}

function gauge(id: string, label: string, used: number, limit: number | null, note: string): HTMLElement {
  const meter = h("meter", { id, min: 0, max: limit ?? Math.max(1, used), value: used,
    low: limit ? limit * 0.7 : undefined, high: limit ? limit * 0.9 : undefined, optimum: 0 });
  return h("div", {}, h("label", { for: id }, label), meter,
    h("div", { class: "muted" }, `${used.toLocaleString()} of ${limit === null ? "unlimited" : limit.toLocaleString()} ${note}`));
}

export async function renderUsage(main: HTMLElement): Promise<void> {
  const [current, previous, limits] = await Promise.all([month(0), month(-1), api((c) => c.getAccountLimits())]);
  const months = [{ month: current, id: "usage-current", tab: "This month" }, { month: previous, id: "usage-previous", tab: "Previous month" }];
  const panels = months.map((m) => panel(m.month, m.id));
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Month" });
  const select = (i: number) => {
    panels.forEach((p, j) => { p.hidden = i !== j; });
    [...tabs.children].forEach((tab, j) => {
      tab.setAttribute("aria-selected", String(i === j));
      tab.setAttribute("tabindex", i === j ? "0" : "-1");
    });
  };
  months.forEach((m, i) => tabs.append(h("button", { type: "button", role: "tab", class: "secondary", id: `${m.id}-tab`,
    "aria-controls": m.id, onclick: () => select(i), onkeydown: (e: Event) => {
      const key = (e as KeyboardEvent).key;
      if (key !== "ArrowLeft" && key !== "ArrowRight") return;
      const next = (i + 1) % months.length;
      select(next);
      (tabs.children[next] as HTMLElement).focus();
    } }, `${m.tab} (${m.month.title})`)));
  select(0);
  const rl = limits.rate_limit;
  main.replaceChildren(h("h1", {}, "Usage"),
    h("p", { id: "usage-totals" }, `This month: requests: ${current.byDay.totals.requests}, tokens: ` +
      `${current.byDay.totals.prompt_tokens + current.byDay.totals.completion_tokens}, compute units: ` +
      `${Math.round(current.byDay.totals.compute_units * 1000) / 1000}`),
    h("p", { class: "muted" }, `Times are UTC; from ${formatDate(previous.byDay.from)} on.`),
    tabs, ...panels,
    h("h2", {}, `Limits (tier ${limits.tier})`),
    gauge("rate-remaining", "Requests this hour (rate limit)", rl.requests_per_hour - rl.remaining, rl.requests_per_hour,
      `used; ${rl.remaining} left, resets ${formatDate(rl.reset_at)}`),
    ...limits.quotas.map((q, i) => gauge(`quota-${i}`, `Quota: ${q.name} (${q.period})`, q.used, q.limit,
      q.resets_at ? `resets ${formatDate(q.resets_at)}` : "")));
}
