import { type ChannelEvent, Subscriber } from "../../clients/typescript/src/index.js";

/** Seconds of history in the chart, and event rows kept on the page: the page's memory stays bounded. */
const SECONDS = 60;
const MAX_ROWS = 100;

interface Settings {
  gateway: string;
  channel: string;
  /** A fixed token (it stops working when it expires), or else… */
  token?: string;
  /** …where to get a fresh one whenever the client asks: this page's server by default. */
  tokenUrl: string;
}

function element<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

/** Settings live in the URL fragment, which the browser never sends to a server. */
function settingsFromHash(): Settings | undefined {
  const params = new URLSearchParams(location.hash.slice(1));
  const gateway = params.get("gateway");
  const channel = params.get("channel");
  if (!gateway || !channel) return undefined;
  const token = params.get("token") || undefined;
  return { gateway, channel, token, tokenUrl: params.get("tokenUrl") || "/token" };
}

/** Event counts per wall-clock second, for the last SECONDS seconds. */
class PerSecond {
  private readonly counts = new Map<number, number>();

  add(now: number): void {
    const second = Math.floor(now / 1000);
    this.counts.set(second, (this.counts.get(second) ?? 0) + 1);
    for (const key of this.counts.keys()) if (key <= second - SECONDS) this.counts.delete(key);
  }

  /** Oldest first; the last entry is the second in progress. */
  series(now: number): number[] {
    const second = Math.floor(now / 1000);
    return Array.from({ length: SECONDS }, (_, i) => this.counts.get(second - SECONDS + 1 + i) ?? 0);
  }
}

function clock(date: Date): string {
  return date.toTimeString().slice(0, 8);
}

function addRow(cells: Array<{ text: string; className?: string }>, className?: string): void {
  const list = element<HTMLUListElement>("events");
  const row = document.createElement("li");
  if (className) row.className = className;
  for (const cell of cells) {
    const node = document.createElement(cell.className === "data" ? "code" : "span");
    node.textContent = cell.text;
    if (cell.className && cell.className !== "data") node.className = cell.className;
    row.append(node);
  }
  list.prepend(row);
  while (list.children.length > MAX_ROWS) list.lastElementChild?.remove();
}

function setStatus(state: string, text: string): void {
  const status = element("status");
  status.dataset.state = state;
  status.textContent = text;
}

function watch(settings: Settings): void {
  element("channel-name").textContent = settings.channel;
  element("dashboard").hidden = false;
  element("chart").hidden = false;
  const perSecond = new PerSecond();
  let total = 0;
  let gaps = 0;

  let refreshes = 0;
  const subscriber = new Subscriber({
    url: settings.gateway,
    // Called for every connection and, with `refresh`, before the token expires: the socket stays open.
    token:
      settings.token ??
      (async () => {
        const response = await fetch(settings.tokenUrl, { cache: "no-store" });
        if (!response.ok) throw new Error(`token endpoint: HTTP ${response.status}`);
        return response.text();
      }),
    channels: [settings.channel],
  });
  subscriber.on("connected", () => setStatus("live", "live"));
  subscriber.on("refreshed", () => {
    refreshes++;
    element("status").dataset.refreshes = String(refreshes);
  });
  subscriber.on("disconnected", ({ reconnectInMs }) =>
    reconnectInMs === undefined
      ? setStatus("closed", "closed")
      : setStatus("waiting", `reconnecting in ${(reconnectInMs / 1000).toFixed(1)} s`),
  );
  subscriber.on("event", (event: ChannelEvent) => {
    const now = Date.now();
    perSecond.add(now);
    total++;
    element("total").textContent = String(total);
    element("last-id").textContent = event.id;
    addRow([
      { text: clock(new Date(now)), className: "dim" },
      { text: event.id, className: "dim" },
      { text: event.recordType ?? (event.broadcast ? "broadcast" : "published") },
      { text: JSON.stringify(event.data), className: "data" },
    ]);
  });
  subscriber.on("gap", ({ reason }) => {
    gaps++;
    element("gaps").textContent = String(gaps);
    addRow(
      [
        { text: clock(new Date()), className: "dim" },
        {
          text:
            reason === "history_gone" ? "history reset: events may be missing" : "missed events: replaying",
        },
      ],
      "gap",
    );
  });
  subscriber.on("error", ({ code, message }) =>
    addRow([{ text: clock(new Date()), className: "dim" }, { text: `${code}: ${message}` }], "gap"),
  );

  const chart = element("chart");
  const bars = Array.from({ length: SECONDS }, () => chart.appendChild(document.createElement("div")));
  setInterval(() => {
    const series = perSecond.series(Date.now());
    const peak = Math.max(1, ...series);
    series.forEach((count, i) => {
      (bars[i] as HTMLDivElement).style.height = `${(count / peak) * 100}%`;
    });
    chart.dataset.series = JSON.stringify(series);
    // The last complete second: the one in progress would always read low.
    element("rate").textContent = String(series[SECONDS - 2]);
  }, 250);
}

function showSetup(): void {
  const form = element<HTMLFormElement>("setup");
  form.hidden = false;
  setStatus("closed", "not connected");
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    const data = new FormData(form);
    const settings = new URLSearchParams({
      gateway: String(data.get("gateway")),
      channel: String(data.get("channel")),
    });
    if (data.get("token")) settings.set("token", String(data.get("token")));
    location.hash = settings.toString();
    location.reload();
  });
}

const settings = settingsFromHash();
if (settings) watch(settings);
else showSetup();
