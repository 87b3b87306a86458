// The sw.js of a site built with --no-offline: it replaces an earlier build's Workbox worker,
// deletes that worker's precache and unregisters, then reloads the open pages so they come from
// the network again. Without it, an installed worker would keep serving the old build.

interface RetiringScope {
  registration: { unregister(): Promise<boolean> };
  clients: { matchAll(options: { type: "window" }): Promise<{ url: string; navigate(url: string): Promise<unknown> }[]> };
  skipWaiting(): Promise<void>;
  addEventListener(type: "install" | "activate", listener: (event: { waitUntil(p: Promise<unknown>): void }) => void): void;
}

declare const self: RetiringScope;
export {}; // a module, so `self` above is this file's own declaration

self.addEventListener("install", () => void self.skipWaiting());
self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      // Workbox names its precache "workbox-precache-v2-<scope>"; the engine's weight store
      // has names of its own and stays.
      const names = await caches.keys();
      await Promise.all(names.filter((name) => name.startsWith("workbox-precache")).map((name) => caches.delete(name)));
      await self.registration.unregister();
      for (const client of await self.clients.matchAll({ type: "window" })) await client.navigate(client.url);
    })(),
  );
});
