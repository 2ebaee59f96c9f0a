// The portal's shell: hash routes, the navigation, the sign-in page and the re-sign-in dialog.
import { announce, errorText, field, h } from "./dom.js";
import { makeClient, onExpired, resume, session, signIn, signOut } from "./session.js";
import { renderKeys } from "./pages/keys.js";
import { renderPlayground } from "./pages/playground.js";
import { renderModels } from "./pages/models.js";
import { renderUsage } from "./pages/usage.js";
import { renderAccount } from "./pages/account.js";
import { renderAdmin } from "./pages/admin.js";
import { renderUsers } from "./pages/users.js";
import { renderUpgrades } from "./pages/upgrades.js";

type Page = (main: HTMLElement) => Promise<void>;

const PAGES: { route: string; title: string; render: Page; admin?: boolean }[] = [
  { route: "keys", title: "API keys", render: renderKeys },
  { route: "playground", title: "Playground", render: renderPlayground },
  { route: "models", title: "Models", render: renderModels },
  { route: "usage", title: "Usage", render: renderUsage },
  { route: "account", title: "Account", render: renderAccount },
  { route: "admin", title: "Admin", render: renderAdmin, admin: true },
  { route: "users", title: "Users", render: renderUsers, admin: true },
  { route: "upgrades", title: "Upgrades", render: renderUpgrades, admin: true },
];

function route(): string {
  return location.hash.replace(/^#\/?/, "") || "keys";
}

function renderNav(): void {
  const nav = document.getElementById("nav")!;
  const who = document.getElementById("who")!;
  nav.replaceChildren();
  who.replaceChildren();
  const s = session();
  if (!s) return;
  for (const page of PAGES) {
    if (page.admin && !s.user.is_admin) continue;
    const link = h("a", { href: `#/${page.route}`, id: `nav-${page.route}` }, page.title);
    if (page.route === route()) link.setAttribute("aria-current", "page");
    nav.append(link);
  }
  who.append(
    h("span", { id: "who-email" }, s.user.email),
    h("button", { class: "secondary", id: "sign-out", onclick: async () => {
      await signOut();
      location.hash = "#/signin";
      await show();
    } }, "Sign out"),
  );
}

function signInForm(onDone: () => Promise<void>, idPrefix: string): HTMLFormElement {
  const email = h("input", { type: "email", id: `${idPrefix}-email`, autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: `${idPrefix}-password`, autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert", id: `${idPrefix}-error` });
  const form = h("form", {}, field("Email", email), field("Password", password),
    h("button", { type: "submit", id: `${idPrefix}-submit` }, "Sign in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await signIn(email.value, password.value);
      await onDone();
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  return form;
}

/** Sign up (servers with open sign-up; a closed one answers 403, shown as is), then sign in. */
function signUpForm(onDone: () => Promise<void>): HTMLElement {
  const email = h("input", { type: "email", id: "signup-email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "signup-password", autocomplete: "new-password", required: true, minlength: 8 });
  const error = h("p", { class: "error", role: "alert", id: "signup-error" });
  const form = h("form", {}, field("Email", email), field("Password", password, "At least 8 characters."),
    h("button", { type: "submit", id: "signup-submit" }, "Create account"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await makeClient().signUp({ email: email.value, password: password.value });
      await signIn(email.value, password.value);
      await onDone();
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  return h("details", {}, h("summary", { id: "signup-open" }, "No account? Create one"), form);
}

function renderSignIn(main: HTMLElement): void {
  const done = async () => {
    if (route() === "signin") location.hash = "#/keys";
    await show();
  };
  main.replaceChildren(
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Sign in with your BitNet account to manage keys, models and usage."),
    signInForm(done, "signin"),
    signUpForm(done),
  );
  (main.querySelector("#signin-email") as HTMLElement).focus();
}

/** The session expired: sign in again in a dialog over the page (the page keeps its inputs). */
function reSignIn(): Promise<void> {
  return new Promise((resolve) => {
    const dialog = h("dialog", { id: "resignin", "aria-labelledby": "resignin-title" });
    dialog.append(
      h("h2", { id: "resignin-title" }, "Your session has expired"),
      h("p", {}, "Sign in again to continue; what you typed on the page is kept."),
      signInForm(async () => {
        dialog.close();
        dialog.remove();
        renderNav();
        resolve();
      }, "resignin"),
    );
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
  });
}

let rendering = 0;

async function show(): Promise<void> {
  const main = document.getElementById("main")!;
  const mine = ++rendering;
  announce("");
  renderNav();
  const s = session();
  if (!s) {
    renderSignIn(main);
    return;
  }
  const page = PAGES.find((p) => p.route === route()) ?? PAGES[0];
  document.title = `${page.title} — BitNet portal`;
  if (page.admin && !s.user.is_admin) {
    main.replaceChildren(h("h1", {}, page.title),
      h("p", { class: "error", role: "alert", id: "refused" }, "This page is for administrators only."));
    return;
  }
  main.replaceChildren(h("p", {}, "Loading…"));
  try {
    await page.render(main);
  } catch (e) {
    if (mine === rendering) main.replaceChildren(h("h1", {}, page.title), h("p", { class: "error", role: "alert" }, errorText(e)));
  }
  if (mine === rendering) main.focus({ preventScroll: true });
}

onExpired(reSignIn);
window.addEventListener("hashchange", () => void show());
void (async () => {
  await resume();
  await show();
})();
