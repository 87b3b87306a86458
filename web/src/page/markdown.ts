// Markdown for the model's replies. Model output is untrusted text: it is HTML-escaped first; only
// then do a few rules add the tags below, so no markup the model writes can reach the DOM.

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function renderInline(escaped: string): string {
  // Code spans first, so that emphasis markers inside them stay literal.
  return escaped
    .split(/(`[^`\n]+`)/)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${part.slice(1, -1)}</code>`;
      return part
        .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
        .replace(/__([^_\n]+)__/g, "<strong>$1</strong>")
        .replace(/(^|[^*])\*([^*\n]+)\*(?!\*)/g, "$1<em>$2</em>")
        .replace(/(^|[^\w_])_([^_\n]+)_(?![\w_])/g, "$1<em>$2</em>");
    })
    .join("");
}

function renderParagraphs(text: string): string {
  return text
    .split(/\n{2,}/)
    .map((block) => block.trim())
    .filter((block) => block)
    .map((block) => `<p>${renderInline(escapeHtml(block)).replace(/\n/g, "<br>")}</p>`)
    .join("");
}

// Paragraphs, line breaks, fenced code blocks, code spans, bold and italics, as HTML.
export function renderMarkdown(text: string): string {
  const html: string[] = [];
  // An unclosed fence (a reply still streaming) runs to the end of the text.
  const fence = /```[^\n`]*\n?([\s\S]*?)(?:```|$)/g;
  let last = 0;
  for (const match of text.matchAll(fence)) {
    html.push(renderParagraphs(text.slice(last, match.index)));
    html.push(`<pre><code>${escapeHtml(match[1].replace(/\n$/, ""))}</code></pre>`);
    last = match.index + match[0].length;
  }
  html.push(renderParagraphs(text.slice(last)));
  return html.join("");
}
