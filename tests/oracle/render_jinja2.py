#!/usr/bin/env python3
"""Reference renderer for the Jinja oracle tests: Python jinja2 configured as transformers does.

Mirrors transformers' `_compile_jinja_template` (src/transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, jinja2.ext.loopcontrols]), the `tojson` filter override
(json.dumps with ensure_ascii=False, indent, separators, sort_keys), and the globals
`raise_exception` and `strftime_now`. For chat requests it first applies the message
normalisation vLLM does before rendering (vllm/entrypoints/chat_utils.py: content parts,
reasoning copied to reasoning_content, tool-call arguments parsed from JSON strings,
tools dumped through pydantic models with description/parameters defaulting to None).

Usage: render_jinja2.py IN.json OUT.json
IN:  {"cases": [{"template": str, "context": {...}}                      (raw render)
               |{"template": str, "request": {...}, "tokens": {...}}]}   (chat request)
OUT: {"results": [{"ok": true, "output": str} | {"ok": false, "error": "Kind: message"}]}
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(Extension):
    """transformers' AssistantTracker: {% generation %}...{% endgeneration %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---- vLLM-style request normalisation ----

TEXT_PARTS = ("text", "input_text", "output_text", "refusal", "thinking")
IMAGE_PARTS = ("image_url", "input_image", "image_pil", "image_embeds")
AUDIO_PARTS = ("audio_url", "input_audio", "audio_embeds")


def convert_part(part):
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind in TEXT_PARTS:
        text = part.get("refusal") if kind == "refusal" else (
            part.get("thinking") if kind == "thinking" else part.get("text"))
        return None if text is None else {"type": "text", "text": text}
    if kind in IMAGE_PARTS:
        return {"type": "image"}
    if kind in AUDIO_PARTS:
        return {"type": "audio"}
    if kind == "video_url":
        return {"type": "video"}
    raise ValueError(f"Unsupported chat content part type: {kind!r}")


def convert_message(msg):
    role = msg["role"]
    content = msg.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        content = [p for p in (convert_part(x) for x in content) if p is not None]
    out = {"role": role, "content": content}
    if role == "assistant":
        if msg.get("tool_calls") is not None:
            out["tool_calls"] = list(msg["tool_calls"])
        reasoning = msg.get("reasoning")
        if reasoning is None:
            reasoning = msg.get("reasoning_content")
        if reasoning is not None:
            out["reasoning"] = reasoning
            out["reasoning_content"] = reasoning
    elif role == "tool":
        if "tool_call_id" in msg:
            out["tool_call_id"] = msg["tool_call_id"]
        if isinstance(content, list):
            if not any(p.get("type") != "text" for p in content):
                texts = [p.get("text", "") for p in content]
                out["content"] = "\n".join(texts) if texts else ""
    if isinstance(msg.get("name"), str):
        out["name"] = msg["name"]
    if role == "developer":
        out["tools"] = msg.get("tools")
    return out


def fix_tool_calls(msg):
    if msg["role"] != "assistant" or "tool_calls" not in msg:
        return
    calls = msg["tool_calls"]
    if not isinstance(calls, list):
        return
    if not calls:
        del msg["tool_calls"]
        return
    for call in calls:
        fn = call["function"]
        args = fn.get("arguments")
        if args:
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    args = None
            fn["arguments"] = args if isinstance(args, dict) else {}
        else:
            fn["arguments"] = {}


def convert_tool(tool):
    fn = tool["function"]
    fn_out = {"name": fn["name"], "description": fn.get("description"),
              "parameters": fn.get("parameters")}
    for k, v in fn.items():
        if k not in fn_out:
            fn_out[k] = v
    out = {"type": tool.get("type", "function"), "function": fn_out}
    for k, v in tool.items():
        if k not in out:
            out[k] = v
    return out


def chat_context(request, tokens):
    messages = [convert_message(m) for m in request["messages"]]
    for m in messages:
        fix_tool_calls(m)
    tools = request.get("tools")
    ctx = dict(tokens)
    ctx.update({
        "messages": messages,
        "tools": None if tools is None else [convert_tool(t) for t in tools],
        "documents": request.get("documents"),
        "add_generation_prompt": request.get("add_generation_prompt", True),
    })
    ctx.update(request.get("chat_template_kwargs") or {})
    return ctx


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    env = make_env()
    compiled = {}
    results = []
    for case in cases:
        try:
            src = case["template"]
            if src not in compiled:
                compiled[src] = env.from_string(src)
            if "request" in case:
                ctx = chat_context(json.loads(json.dumps(case["request"])), case.get("tokens", {}))
            else:
                ctx = case.get("context", {})
            results.append({"ok": True, "output": compiled[src].render(**ctx)})
        except Exception as e:  # every failure is a result to compare, not a crash
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"results": results}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
