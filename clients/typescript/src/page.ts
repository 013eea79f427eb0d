/** The parts of a browser page this client uses, looked up at run time so the same build runs on servers. */
interface PageLike {
  document?: {
    visibilityState: string;
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
  addEventListener?(type: string, listener: (event: { persisted?: boolean }) => void): void;
  removeEventListener?(type: string, listener: (event: { persisted?: boolean }) => void): void;
}

/**
 * Calls `handler` when the page is hidden or unloaded (`visibilitychange` to
 * hidden, `pagehide`): the last moment a browser reliably lets a page send.
 * `final` is true when the page is being unloaded for good (a `pagehide` not
 * kept in the back/forward cache). Returns the function that stops listening,
 * or undefined outside a browser page.
 */
export function onPageHide(handler: (final: boolean) => void): (() => void) | undefined {
  const page = globalThis as unknown as PageLike;
  const document = page.document;
  if (!document || typeof page.addEventListener !== "function") return undefined;
  const onVisibilityChange = () => {
    if (document.visibilityState === "hidden") handler(false);
  };
  const onPageHidden = (event: { persisted?: boolean }) => handler(event?.persisted !== true);
  document.addEventListener("visibilitychange", onVisibilityChange);
  page.addEventListener("pagehide", onPageHidden);
  return () => {
    document.removeEventListener("visibilitychange", onVisibilityChange);
    page.removeEventListener?.("pagehide", onPageHidden);
  };
}
