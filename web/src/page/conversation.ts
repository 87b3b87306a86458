// The conversation as the visitor sees and hears it: one element per message, its text kept raw
// in `data-raw` (what Copy copies), and a polite live region for screen readers.

import type { ToolCall } from "../tools";
import { renderMarkdown } from "./markdown";

export type Role = "user" | "assistant";

export interface MessageView {
  element: HTMLElement;
  body: HTMLElement;
  role: Role;
}

export class Conversation {
  constructor(
    private readonly log: HTMLElement,
    private readonly announcer: HTMLElement,
  ) {}

  add(role: Role, text: string): MessageView {
    const element = document.createElement("div");
    element.className = `message ${role}`;
    const copy = this.copyButton("copy", role === "user" ? "Copy message" : "Copy reply", () => element.dataset.raw || "");
    const body = document.createElement("div");
    element.append(copy, body);
    this.log.append(element);
    const message = { element, body, role };
    this.setText(message, text);
    return message;
  }

  setText(message: MessageView, text: string): void {
    message.element.dataset.raw = text;
    if (message.role === "assistant") {
      message.body.innerHTML = renderMarkdown(text);
      for (const pre of message.body.querySelectorAll("pre")) this.addCodeCopy(pre);
    } else {
      message.body.textContent = text;
    }
    this.log.scrollTop = this.log.scrollHeight;
  }

  // The reply's tool calls, each its function's name and its arguments as indented JSON: shown,
  // never run. Copy copies them as JSON.
  showToolCalls(message: MessageView, calls: ToolCall[]): void {
    for (const call of calls) {
      const box = document.createElement("div");
      box.className = "tool-call";
      const title = document.createElement("p");
      title.append("Calls ");
      const name = document.createElement("code");
      name.textContent = call.function.name;
      title.append(name);
      const args = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = prettyJson(call.function.arguments);
      args.append(code);
      box.append(title, args);
      message.body.append(box);
      this.announce(`The model calls ${call.function.name}.`);
    }
    message.element.dataset.raw = JSON.stringify(calls, null, 2);
  }

  // Each code block gets a Copy of its own, above it, which copies the code alone. The block is
  // a Tab stop, so that a keyboard can scroll a long line into view.
  private addCodeCopy(pre: HTMLPreElement): void {
    const block = document.createElement("div");
    block.className = "code-block";
    const copy = this.copyButton("copy-code", "Copy code", () => pre.textContent || "");
    pre.tabIndex = 0;
    pre.replaceWith(block);
    block.append(copy, pre);
  }

  private copyButton(className: string, label: string, text: () => string): HTMLButtonElement {
    const button = document.createElement("button");
    button.type = "button";
    button.className = className;
    button.textContent = "Copy";
    button.setAttribute("aria-label", label);
    button.addEventListener("click", () => this.copy(text(), button));
    return button;
  }

  clear(): void {
    this.log.replaceChildren();
  }

  private async copy(text: string, button: HTMLButtonElement): Promise<void> {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    this.announce(button.textContent === "Copied" ? "Copied to the clipboard." : "Copying failed.");
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  // Each addition to the announcer is read once, in order, so a streamed reply is handed over a
  // finished sentence at a time rather than at every redraw.
  announce(text: string): void {
    const line = document.createElement("p");
    line.textContent = text;
    this.announcer.append(line);
  }

  clearAnnouncements(): void {
    this.announcer.replaceChildren();
  }

  // Announces what `content` adds beyond `spoken` characters, up to its last finished sentence
  // (or all of it when `final`); returns the new count of spoken characters.
  announceReply(content: string, spoken: number, final: boolean): number {
    const rest = content.slice(spoken);
    const end = final ? rest.length : Math.max(...[". ", "! ", "? ", "\n"].map((mark) => rest.lastIndexOf(mark) + 1));
    if (end <= 0 || !rest.slice(0, end).trim()) return final ? content.length : spoken;
    this.announce(rest.slice(0, end).trim());
    return spoken + end;
  }
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
