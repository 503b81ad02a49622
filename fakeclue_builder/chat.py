"""The one prompt format shared by `train` and `evaluate` (and by the transformers backend at inference).

FakeVLM's released code trains with a chat template but evaluates without one; users cannot reproduce its
accuracy. Here both sides build the same OpenAI-style messages and render them with the processor's own chat
template, so the text a model is trained on is exactly the text it is asked at evaluation time.
"""

from __future__ import annotations

from typing import Any

from fakeclue_builder.prompts import QUESTION

__all__ = ["QUESTION", "question_messages", "answer_messages", "render_prompt", "render_example"]


def question_messages(question: str = QUESTION) -> list[dict[str, Any]]:
    """The user turn: the image, then the question (the form every backend accepts as `Request.messages`)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def answer_messages(answer: str, question: str = QUESTION) -> list[dict[str, Any]]:
    """The user turn followed by the assistant's answer (a training example)."""
    return question_messages(question) + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _template_kwargs(chat_template: str | None) -> dict[str, Any]:
    return {"chat_template": chat_template} if chat_template else {}


def render_prompt(processor: Any, question: str = QUESTION, chat_template: str | None = None) -> str:
    """The templated prompt ending where the assistant's answer begins — the same call the transformers
    backend makes for `Request(messages=question_messages(question))`."""
    return processor.apply_chat_template(question_messages(question), add_generation_prompt=True, tokenize=False,
                                         **_template_kwargs(chat_template))


def render_example(processor: Any, answer: str, question: str = QUESTION,
                   chat_template: str | None = None) -> tuple[str, str]:
    """(prompt, completion) of one training example: `prompt` is exactly `render_prompt(...)`, and
    `prompt + completion` is the chat template applied to the whole conversation (answer and end-of-turn
    tokens included). Training puts its loss on the completion only."""
    prompt = render_prompt(processor, question, chat_template)
    full = processor.apply_chat_template(answer_messages(answer, question), tokenize=False,
                                         **_template_kwargs(chat_template))
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer "
                         f"(prompt {prompt!r} is not a prefix of {full!r}); set a chat_template whose "
                         "generation prompt is a prefix of the rendered conversation")
    return prompt, full[len(prompt):]
