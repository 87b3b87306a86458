// The chat page's script (written by `webllm_build site`): it only says where the site's files
// are; the page's logic is startChatApp in the page bundle (web/src/page/app.ts). Every URL is
// relative to this file, so the site works from any sub-path.

// The engine runs in a worker started from ENGINE_URL; the page itself loads only PAGE_URL.
const ENGINE_URL = new URL({{ engine|tojson }}, import.meta.url).href;
const PAGE_URL = new URL({{ page_engine|tojson }}, import.meta.url).href;
const SITE_URL = new URL("site.json", import.meta.url).href;
// The service worker that keeps the site working offline (null: built with --no-offline).
const SERVICE_WORKER_URL = {% if service_worker %}new URL({{ service_worker|tojson }}, import.meta.url).href{% else %}null{% endif %};

// Imported here rather than statically, so a page whose bundle cannot load still says why.
import(PAGE_URL).then(
  (page) => page.startChatApp({ engineUrl: ENGINE_URL, siteUrl: SITE_URL, serviceWorkerUrl: SERVICE_WORKER_URL }),
  (error) => {
    const box = document.getElementById("error");
    box.textContent = `The engine failed to load: ${error.message}. Reload the page.`;
    box.hidden = false;
    console.error(error);
  },
);
