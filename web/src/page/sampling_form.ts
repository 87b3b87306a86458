// The Sampling panel: each field's request key, its range and the words for a bad value. Empty or
// out of range is an error shown next to the field, never a silent fallback.

import type { ChatCompletionRequest } from "../engine_api";
import { element, type PageElements } from "./dom";

export type SamplingSettings = Pick<ChatCompletionRequest, "temperature" | "top_p" | "max_tokens">;

interface Field {
  input: HTMLInputElement;
  key: keyof SamplingSettings;
  min: number;
  max: number;
  integer?: boolean;
  message: string;
}

export class SamplingForm {
  private readonly fields: Field[];

  constructor(private readonly ui: PageElements) {
    this.fields = [
      {
        input: ui.temperature, key: "temperature", min: 0, max: 2,
        message: "Temperature must be a number from 0 to 2.",
      },
      {
        input: ui.topP, key: "top_p", min: 0.01, max: 1,
        message: "Top-p must be a number from 0.01 to 1.",
      },
      {
        input: ui.maxTokens, key: "max_tokens", min: 1, max: Infinity, integer: true,
        message: "Max tokens must be a whole number, 1 or more.",
      },
    ];
    for (const field of this.fields) {
      // A message appears once a value is committed, and goes as soon as the value is fixed.
      field.input.addEventListener("change", () => this.check(field));
      field.input.addEventListener("input", () => {
        if (field.input.getAttribute("aria-invalid") === "true") this.check(field);
      });
    }
  }

  // The panel's values as request fields, or null after opening the panel and moving the focus
  // to the first bad field (its message is read with it).
  settings(): SamplingSettings | null {
    const settings: SamplingSettings = {};
    let firstBad: HTMLInputElement | null = null;
    for (const field of this.fields) {
      const value = this.check(field);
      if (value === null) firstBad = firstBad || field.input;
      else settings[field.key] = value;
    }
    if (firstBad) {
      this.ui.settings.open = true;
      firstBad.focus();
      return null;
    }
    return settings;
  }

  // Checks one field, shows or clears its message; returns its value, or null if bad.
  private check(field: Field): number | null {
    const value = field.input.valueAsNumber;
    const ok =
      field.input.value.trim() !== "" &&
      Number.isFinite(value) &&
      value >= field.min &&
      value <= field.max &&
      (!field.integer || Number.isInteger(value));
    field.input.setAttribute("aria-invalid", String(!ok));
    element(`${field.input.id}-error`, HTMLElement).textContent = ok ? "" : field.message;
    return ok ? value : null;
  }
}
