// Cursor pagination for a list page: Previous / Next buttons over the API's opaque cursors.
import { h } from "./dom.js";

export interface Pager {
  /** The cursor of the page to show (undefined: the first). */
  cursor(): string | undefined;
  /** Start again from the first page (after the filters changed). */
  reset(): void;
  /** The navigation for the page just shown, whose `next_cursor` was `next`. */
  controls(next: string | null): HTMLElement;
}

/** `load` re-renders the list; `label` names the list for screen readers. */
export function pager(label: string, load: () => Promise<void>): Pager {
  const previous: (string | undefined)[] = [];
  let current: string | undefined;
  return {
    cursor: () => current,
    reset: () => { previous.length = 0; current = undefined; },
    controls(next: string | null): HTMLElement {
      const back = h("button", { type: "button", class: "secondary", disabled: !previous.length,
        onclick: async () => { current = previous.pop(); await load(); } }, "Previous page");
      const forward = h("button", { type: "button", class: "secondary", disabled: !next,
        onclick: async () => { previous.push(current); current = next ?? undefined; await load(); } }, "Next page");
      return h("nav", { "aria-label": `${label} pages`, class: "pager" }, back, forward,
        h("span", { class: "muted" }, `Page ${previous.length + 1}`));
    },
  };
}
