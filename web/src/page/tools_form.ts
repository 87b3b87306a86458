// The Tools panel: OpenAI-style function definitions the visitor (a developer trying their
// tools) pastes as JSON, and the tool choice. The page shows the calls the model makes and runs
// none of them. Bad JSON is said next to the field, never sent.

import type { ChatCompletionRequest } from "../engine_api";
import { element, type PageElements } from "./dom";

export type ToolSettings = Pick<ChatCompletionRequest, "tools" | "tool_choice">;

const SHAPE = 'Tools must be a JSON array of {"type": "function", "function": {"name", "parameters"}} objects.';

export class ToolsForm {
  constructor(private readonly ui: PageElements) {
    ui.tools.addEventListener("change", () => this.settings());
  }

  // The request's tools fields ({} when the box is empty), or null after showing what is wrong.
  settings(): ToolSettings | null {
    const { tools, toolChoice, toolsPanel } = this.ui;
    const text = tools.value.trim();
    let parsed: unknown = undefined;
    let problem = "";
    if (text) {
      try {
        parsed = JSON.parse(text);
        if (!Array.isArray(parsed) || parsed.some((t) => typeof t?.function?.name !== "string")) problem = SHAPE;
      } catch (error) {
        problem = `Tools are not valid JSON: ${(error as Error).message}`;
      }
    }
    tools.setAttribute("aria-invalid", String(problem !== ""));
    element("tools-error", HTMLElement).textContent = problem;
    if (problem) {
      toolsPanel.open = true;
      tools.focus();
      return null;
    }
    if (parsed === undefined) return {};
    return { tools: parsed as ToolSettings["tools"], tool_choice: toolChoice.value as "auto" | "required" | "none" };
  }
}
