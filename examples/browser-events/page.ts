import { browserQueue, EventClient, type GatewayEvents } from "../../clients/typescript/src/index.js";

/**
 * A page that sends its analytics with EventClient: a `page_view` on load and
 * a `click` per button press, typed against the gateway's schemas, kept in
 * IndexedDB until the gateway took them (a reload or a dead network loses
 * nothing), with tokens from this page's server, refreshed when they expire.
 */
const params = new URLSearchParams(location.hash.slice(1));
const gateway = params.get("gateway") ?? "http://localhost:8080";

function show(id: string, value: string | number): void {
  const node = document.getElementById(id);
  if (node) node.textContent = String(value);
}

const events = new EventClient<GatewayEvents>({
  url: gateway,
  // Called before requests, with `refresh: true` after a 401; the page keeps one at hand for page hide.
  token: async () => {
    const response = await fetch("/token", { cache: "no-store" });
    if (!response.ok) throw new Error(`token endpoint: HTTP ${response.status}`);
    return response.text();
  },
  storage: browserQueue("browser-events-example"),
  flushIntervalMs: 500,
  onError: (failure) => show("last-error", `${failure.kind} ${failure.status ?? ""}: ${failure.message}`),
});

events.enqueue({ type: "page_view", data: { url: location.href, title: document.title } });

for (const button of document.querySelectorAll<HTMLButtonElement>("button[data-element]")) {
  button.addEventListener("click", (click) => {
    const id = events.enqueue({
      type: "click",
      data: { element: button.dataset.element ?? "button", x: click.clientX, y: click.clientY },
    });
    show("last-id", id ?? "dropped: buffer full");
  });
}

setInterval(() => {
  const stats = events.stats;
  show("accepted", stats.accepted);
  show("buffered", stats.buffered);
  show("dropped", stats.dropped);
  show("retries", stats.retries);
  show("online", navigator.onLine ? "online" : "offline");
}, 200);
