"""Chat prompts of our own for the real default model (SmolLM2-135M-Instruct), shared by the CPU
build's tests (test_models.py) and the site's in Chromium (test_site_chat.py), and by
benchmarks/quality.py."""

from __future__ import annotations

from pathlib import Path

CHAT_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]

# Everyday prompts for the default model's faithfulness (issue 16 asked for 20).
EVERYDAY_PROMPTS = [
    *CHAT_PROMPTS,
    "Write a one-line Python function that squares a number.",
    "Why is the sky blue?",
    "Give me a synonym for happy.",
    "What is 12 times 7?",
    "Name a famous painter.",
    "How do I boil an egg?",
    "Translate 'good morning' to Spanish.",
    "Name three colors of the rainbow.",
    "What does a bee make?",
    "Write a short greeting for a birthday card.",
    "What is the boiling point of water in Celsius?",
    "Suggest a name for a pet cat.",
    "What is the opposite of cold?",
    "Explain what a noun is in one sentence.",
    "How many days are in a week?",
    "Recommend a fruit that is high in vitamin C.",
    "What language is spoken in Brazil?",
]


def chat_prompt_ids(tokenizer_file: str | Path, chat_template: str, texts: list[str]) -> list[list[int]]:
    """Each text as a one-message chat with the generation prompt, rendered as transformers
    renders chat templates (a sandbox with trim_blocks and lstrip_blocks) and tokenized."""
    import jinja2.sandbox
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(chat_template)
    return [
        tokenizer.encode(
            template.render(messages=[{"role": "user", "content": text}], add_generation_prompt=True),
            add_special_tokens=False,
        ).ids
        for text in texts
    ]
