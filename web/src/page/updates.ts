// Registers the site's service worker (sw.js, web/src/sw.ts) and moves the page to a new build
// when one is deployed. The new worker installs beside the old one and waits, so an open page
// never mixes files of two builds. A page with nothing to lose (no model loaded or loading)
// switches at once: the next visit after a deploy gets the new build. Otherwise the page says a
// new version is ready and switches when the visitor asks.

import { Workbox } from "workbox-window";

export function watchForUpdates(serviceWorkerUrl: string, idle: () => boolean): void {
  if (!("serviceWorker" in navigator)) return; // an insecure origin, or a browser without them
  const workbox = new Workbox(serviceWorkerUrl);
  workbox.addEventListener("waiting", (event) => {
    const waiting = event.sw;
    if (!waiting) return;
    const apply = () => {
      // Reload once the new worker is active: it then serves every file of the page, and the
      // old worker's cache entries are gone.
      waiting.addEventListener("statechange", () => {
        if (waiting.state === "activated") location.reload();
      });
      workbox.messageSkipWaiting();
    };
    if (idle()) apply();
    else offerUpdate(apply);
  });
  workbox.register().catch((error: unknown) => {
    // The site still works online; only the offline copy is missing.
    console.warn(`The service worker did not register, so this site will not open offline: ${String(error)}`);
  });
}

function offerUpdate(apply: () => void): void {
  const banner = document.getElementById("update");
  const button = document.getElementById("update-now");
  if (!banner || !button) return;
  button.addEventListener("click", apply, { once: true });
  banner.hidden = false;
}
