/** The parts of a browser page this client uses, looked up at run time so the same build runs on servers. */
interface PageLike {
  document?: {
    visibilityState: string;
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
  addEventListener?(type: string, listener: () => void): void;
  removeEventListener?(type: string, listener: () => void): void;
}

/**
 * Calls `handler` when the page is hidden or unloaded (`visibilitychange` to
 * hidden, `pagehide`): the last moment a browser reliably lets a page send.
 * Returns the function that stops listening, or undefined outside a browser page.
 */
export function onPageHide(handler: () => void): (() => void) | undefined {
  const page = globalThis as unknown as PageLike;
  const document = page.document;
  if (!document || typeof page.addEventListener !== "function") return undefined;
  const onVisibilityChange = () => {
    if (document.visibilityState === "hidden") handler();
  };
  document.addEventListener("visibilitychange", onVisibilityChange);
  page.addEventListener("pagehide", handler);
  return () => {
    document.removeEventListener("visibilitychange", onVisibilityChange);
    page.removeEventListener?.("pagehide", handler);
  };
}
