// A plain SVG bar chart (no library): one bar per key, labelled, with a text alternative.
const NS = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Bars at their natural size (shrunk to fit a narrow screen by CSS); every `labelEvery`th label shown. */
export function barChart(title: string, points: { label: string; value: number }[], labelEvery = 1): SVGElement {
  const width = Math.max(320, points.length * (labelEvery > 1 ? 14 : 120) + 16);
  const height = 180;
  const top = 16, bottom = 36, left = 8;
  const max = Math.max(1, ...points.map((p) => p.value));
  const bar = (width - left * 2) / Math.max(1, points.length);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title,
    class: "chart" });
  root.append(svg("title", {}, `${title}: ${points.map((p) => `${p.label} ${p.value}`).join(", ") || "no data"}`));
  points.forEach((p, i) => {
    const h = ((height - top - bottom) * p.value) / max;
    const x = left + i * bar + 4;
    const y = height - bottom - h;
    root.append(svg("rect", { x, y, width: Math.max(2, bar - 8), height: h, fill: "#0b4fa3" }));
    if (p.value && labelEvery === 1) root.append(svg("text", { x: x + (bar - 8) / 2, y: y - 3, "text-anchor": "middle" }, String(p.value)));
    if (i % labelEvery === 0) root.append(svg("text", { x: x + (bar - 8) / 2, y: height - bottom + 14, "text-anchor": "middle" }, p.label));
  });
  root.append(svg("line", { x1: left, x2: width - left, y1: height - bottom, y2: height - bottom, stroke: "#222" }));
  return root;
}
