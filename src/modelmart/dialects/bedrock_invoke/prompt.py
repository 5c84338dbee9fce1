"""A raw prompt string (Meta Llama and Mistral bodies) read back into turns.

Clients format the conversation with the model's chat template before sending it
(LangChain's ``ChatBedrock`` does), but the model that answers here may be any catalog
model, which applies its own template: so the known templates are parsed back into a
system prompt and user/assistant turns, and their markers dropped. Known:

- Llama 3 (``<|start_header_id|>role<|end_header_id|> ... <|eot_id|>``) and Llama 4
  (``<|header_start|>role<|header_end|> ... <|eot|>``), ``<|begin_of_text|>`` optional;
- ``[INST] ... [/INST]`` (Llama 2 and Mistral), with ``<s>``/``</s>``, an optional
  ``<<SYS>> ... <</SYS>>`` or Mistral's ``[SYSTEM_PROMPT] ... [/SYSTEM_PROMPT]``;
- for Titan Text only (``labelled=True``), turns labelled ``User:`` / ``Bot:`` (or
  ``Human:`` / ``Assistant:``) after a blank line, text before the first as the system
  prompt; plain words, so only where that family's documentation writes them.

Anything else — plain text, or a template used inconsistently — is one user turn holding
the prompt exactly as sent: never a guess that loses text.
"""

from __future__ import annotations

import re

from modelmart.core.types import Message, TextBlock

_HEADERS = (
    # (turn pattern, marker that must appear for the template to be assumed)
    (re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|<\|eom_id\|>|\Z)",
                re.S), "<|start_header_id|>"),
    (re.compile(r"<\|header_start\|>(\w+)<\|header_end\|>(.*?)(?:<\|eot\|>|<\|eom\|>|\Z)", re.S),
     "<|header_start|>"),
)
_BEGIN = ("<|begin_of_text|>",)
_SYS = re.compile(r"<<SYS>>(.*?)<</SYS>>|\[SYSTEM_PROMPT\](.*?)\[/SYSTEM_PROMPT\]", re.S)
_INST = re.compile(r"\[INST\](.*?)\[/INST\]", re.S)
_ROLES = {"user": "user", "assistant": "assistant", "ipython": "user", "tool": "user"}
_LABELS = re.compile(r"(?:^|\n\n)(User|Bot|Human|Assistant):")
_LABEL_ROLES = {"User": "user", "Human": "user", "Bot": "assistant", "Assistant": "assistant"}


def parse_prompt(prompt: str, *, labelled: bool = False) -> tuple[str | None, list[Message]]:
    """(system prompt, turns) of ``prompt``; turns never empty."""
    if labelled and _LABELS.search(prompt):
        parsed = _labelled(prompt)
        if parsed is not None:
            return parsed
    for pattern, marker in _HEADERS:
        if marker in prompt:
            parsed = _headers(prompt, pattern, marker)
            if parsed is not None:
                return parsed
    if "[INST]" in prompt:
        parsed = _inst(prompt)
        if parsed is not None:
            return parsed
    return None, [Message("user", [TextBlock(prompt)])]


def _headers(prompt: str, pattern: re.Pattern, marker: str
             ) -> tuple[str | None, list[Message]] | None:
    rest = prompt.strip()
    for begin in _BEGIN:
        rest = rest.removeprefix(begin)
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    pos = 0
    for match in pattern.finditer(rest):
        if rest[pos:match.start()].strip():
            return None  # text outside any turn: not the template after all
        pos = match.end()
        role, text = match.group(1), match.group(2).strip()
        if marker in text:
            return None  # a turn left open: its end is not where the template says
        if role == "system":
            system.append(text)
        elif role in _ROLES:
            turns.append((_ROLES[role], text))
        else:
            return None
    if rest[pos:].strip():
        return None
    return _finish(system, turns)


def _inst(prompt: str) -> tuple[str | None, list[Message]] | None:
    system = [(a or b).strip() for a, b in _SYS.findall(prompt)]
    rest = _SYS.sub("", prompt).replace("<s>", "").replace("</s>", "")
    turns: list[tuple[str, str]] = []
    pos = 0
    for match in _INST.finditer(rest):
        answer = rest[pos:match.start()].strip()
        if answer:
            if not turns:
                return None  # text before the first [INST]
            turns.append(("assistant", answer))
        turns.append(("user", match.group(1).strip()))
        pos = match.end()
    tail = rest[pos:].strip()
    if tail:
        turns.append(("assistant", tail))  # a prefilled answer to continue
    return _finish(system, turns)


def _labelled(prompt: str) -> tuple[str | None, list[Message]] | None:
    parts = _LABELS.split(prompt)  # [before, label, text, label, text, ...]
    turns = [(_LABEL_ROLES[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    return _finish([parts[0].strip()], turns)


def _finish(system: list[str], turns: list[tuple[str, str]]
            ) -> tuple[str | None, list[Message]] | None:
    messages: list[Message] = []
    for role, text in turns:
        if not text:
            continue  # the empty assistant header that asks for the answer
        if messages and messages[-1].role == role:
            messages[-1].content.append(TextBlock(text))
        else:
            messages.append(Message(role, [TextBlock(text)]))
    if not messages or messages[0].role != "user":
        return None
    return "\n\n".join(s for s in system if s) or None, messages
