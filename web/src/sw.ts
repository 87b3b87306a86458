// The site's service worker (sw.js): Workbox precaching of everything a visit needs except the
// weights, so the chat opens and answers with no network after one visit. The weights stay in
// the engine's own store (weights.ts), which verifies every shard it reads.
//
// `webllm_build site` writes sw.js from this bundle, putting the build's manifest (each file's
// URL and, for names that do not carry a content hash, a revision) where `self.__WB_MANIFEST`
// stands: the same injection workbox-build's injectManifest makes, done in Python so building a
// site needs no Node (webllm_build/offline.py).

import { clientsClaim } from "workbox-core";
import { cleanupOutdatedCaches, precacheAndRoute, type PrecacheEntry } from "workbox-precaching";

interface ServiceWorkerScope {
  __WB_MANIFEST: PrecacheEntry[];
  skipWaiting(): Promise<void>;
  addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
}

declare const self: ServiceWorkerScope;

// A new build installs beside the old one and waits: the open page keeps the files it started
// with (no mix of two builds) until it asks for the switch (page/updates.ts).
precacheAndRoute(self.__WB_MANIFEST);
cleanupOutdatedCaches();
// The first worker takes the page that installed it at once (its precache holds that same build),
// so a build deployed while that page is open waits for it too, instead of activating beside it.
clientsClaim();

self.addEventListener("message", (event) => {
  if (event.data?.type === "SKIP_WAITING") void self.skipWaiting();
});
