// Markdown for the model's replies, which are untrusted text. Two walls stand between them and the
// DOM: markdown-it renders with raw HTML off and only http(s) and mailto links, so a reply's own
// markup comes out as text; DOMPurify then keeps only the tags and attributes markdown-it writes,
// so a bug in the first wall (or in a rule below) still cannot let a script or a handler through.

import DOMPurify from "dompurify";
import MarkdownIt, { type RendererRule } from "markdown-it";

const SAFE_URL = /^(?:https?|mailto):/i;
const LINK_ATTRIBUTES: [string, string][] = [
  ["target", "_blank"],
  // The opened page gets no handle on this one (window.opener) and learns nothing of where the
  // visitor came from.
  ["rel", "noopener noreferrer"],
];
// GFM tables write column alignment as a style attribute; no other style gets through.
const ALIGNMENT = /^text-align:(?:left|center|right)$/;

// breaks: models end lines where they mean them, as a chat shows them. Bare URLs with a scheme
// become links, but not bare names (fuzzyLink): "main.py" or "node.js" would link to hosts in
// Paraguay and Jordan.
const md = new MarkdownIt({ html: false, linkify: true, breaks: true });
md.linkify.set({ fuzzyLink: false });
// Checked after markdown-it has decoded entities and percent-encoded what is left, so
// "jav&#x09;ascript:" arrives as "jav%09ascript:" and fails. A link that fails stays text.
md.validateLink = (url) => SAFE_URL.test(url.trim());

const renderLinkOpen: RendererRule = (tokens, idx, options, _env, self) => {
  for (const [name, value] of LINK_ATTRIBUTES) tokens[idx].attrSet(name, value);
  return self.renderToken(tokens, idx, options);
};
md.renderer.rules.link_open = renderLinkOpen;

// An <img> would make the visitor's browser fetch whatever URL the model wrote, and the page
// promises that nothing leaves the device (a model could also smuggle the conversation out in
// the URL). An image is a link instead, which the visitor may choose to open; inside a link it is
// its text.
const renderImage: RendererRule = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const src = String(token.attrGet("src") ?? "");
  const label = md.utils.escapeHtml(`Image: ${self.renderInlineAsText(token.children ?? [], options, env) || src}`);
  const depth = tokens.slice(0, idx).reduce((n, t) => n + (t.type === "link_open" ? 1 : t.type === "link_close" ? -1 : 0), 0);
  if (depth > 0) return label;
  const attributes: [string, string][] = [["href", src], ...LINK_ATTRIBUTES];
  return `<a${attributes.map(([name, value]) => ` ${name}="${md.utils.escapeHtml(value)}"`).join("")}>${label}</a>`;
};
md.renderer.rules.image = renderImage;

// The page's <h1> is its title, and a reply sits below it: its headings start at <h2> and never
// skip a level, so the page's outline stays whole for screen readers.
md.core.ruler.push("reply_headings", (state) => {
  let level = 1;
  for (const token of state.tokens) {
    if (token.type === "heading_open") level = Math.min(Number(token.tag.slice(1)) + 1, level + 1, 6);
    if (token.type === "heading_open" || token.type === "heading_close") token.tag = `h${level}`;
  }
});

// markdown-it ends a code block with the newline before its closing fence; without it, a block's
// text is the code exactly, as its Copy button copies it.
md.core.ruler.push("code_ends", (state) => {
  for (const token of state.tokens) {
    if (token.type === "fence" || token.type === "code_block") token.content = token.content.replace(/\n$/, "");
  }
});

// A purifier of our own, so that its hooks apply to replies only.
const purify = DOMPurify(window);
const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "p", "br", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "hr", "a",
    "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
  ],
  ALLOWED_ATTR: ["href", "target", "rel", "start", "style"],
  // DOMPurify tests every attribute value not named here against ALLOWED_URI_REGEXP.
  ADD_URI_SAFE_ATTR: ["target", "rel", "start"],
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
};
purify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "style") data.keepAttr = /^T[HD]$/.test(node.nodeName) && ALIGNMENT.test(data.attrValue);
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  for (const [name, value] of LINK_ATTRIBUTES) node.setAttribute(name, value);
});

// A reply (or the part of it streamed so far: an unclosed code fence runs to its end) as HTML.
export function renderMarkdown(text: string): string {
  return purify.sanitize(md.render(text), PURIFY_CONFIG);
}
