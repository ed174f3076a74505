#!/usr/bin/env python3
"""Oracle for the Gemma 4 tool-call and reasoning parsers.

Renders assistant messages with seeded random tool calls (and sometimes reasoning and text content)
through the real Gemma 4 chat template, the way transformers renders it (jinja2
ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, a tojson filter), cuts out the
model-side text (what the model would have generated for that turn) and prints one JSON object
per line:

  {"text": model-side text,
   "reasoning": expected reasoning or null,
   "content": expected content,
   "calls": [{"name": ..., "arguments": json.dumps(args in rendered key order, ensure_ascii=False),
              "arguments_value": args}]}

"arguments" is what vLLM's gemma4 parser returns for the call; keys appear in the template's
dictsort order (case-insensitive, stable), recursively.

Usage: render_tool_calls.py [--seed N] [--count N] [--template PATH]
Only python3 + jinja2 are needed.
"""
import argparse
import json
import os
import random
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEMPLATE = os.path.join(HERE, "..", "data", "templates", "google-gemma-4-31B-it.jinja")
STRING_DELIM = '<|"|>'

# Pieces random strings are built from: JSON-hostile characters, Gemma near-markers, unicode.
STRING_ATOMS = [
    "a", "b", "Z", "0", "7", " ", "  ", '"', "'", "\\", "{", "}", "[", "]", ",", ":", "<", ">",
    "|", "\n", "\t", "\r", "\x01", "\x1b", "\x7f", "é", "ß", "中文", "😀", "\u2028", "ー",
    "<|", "|>", '<|"|', '|"|>', "<tool_call|>", "<|tool_call>", "call:x{", "}<tool_call|>",
    "null", "true", "1.5", "None", "key:", "{a:1}", "[1,2]", "\\n", "\\u0041",
]
KEY_ATOMS = ["a", "b", "B", "x", "Y", "_", "1", "9", "-", ".", " ", "é", "ключ", "名", "$", "@"]
NAMES = ["get_weather", "search.web", "run-code", "f", "F1", "a.b.c", "tool_2", "x-y_z.w"]
TEXT_ATOMS = ["Sure", " ", "I'll", " check", ".", "\n", "{", "}", "é", "😀", ":", ",", "<", ">",
              "call", "tool", "ok"]


def random_string(rng, atoms, max_atoms):
    while True:
        s = "".join(rng.choice(atoms) for _ in range(rng.randint(0, max_atoms)))
        if STRING_DELIM not in s:
            return s


def random_key(rng):
    # Bare keys must not contain the call syntax's structural bytes or start/end with spaces
    # (the template prints keys unquoted; such keys cannot be read back by anyone).
    while True:
        k = "".join(rng.choice(KEY_ATOMS) for _ in range(rng.randint(0, 6))).strip()
        if rng.random() < 0.05 or k:
            return k


def random_float(rng):
    special = [0.0, -0.0, 0.1, 2.5, 1e16, 1e-05, 1.5e300, 5e-324, -123.456, 1e22, 3.0]
    if rng.random() < 0.4:
        return rng.choice(special)
    return rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20)


def random_int(rng):
    return rng.choice([0, 1, -1, rng.randint(-1000, 1000), rng.randint(-2**63, 2**63),
                       2**70 + rng.randint(0, 1000), -(2**64)])


def random_value(rng, depth):
    kinds = ["str", "int", "float", "bool", "null"]
    if depth < 4:
        kinds += ["list", "dict", "list", "dict"]
    kind = rng.choice(kinds)
    if kind == "str":
        return random_string(rng, STRING_ATOMS, 12)
    if kind == "int":
        return random_int(rng)
    if kind == "float":
        return random_float(rng)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return random_dict(rng, depth + 1)


def random_dict(rng, depth):
    return {random_key(rng): random_value(rng, depth) for _ in range(rng.randint(0, 5))}


def dictsorted(value):
    """The value with every mapping's keys in the order the template's dictsort prints them."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].lower())
        return {k: dictsorted(v) for k, v in items}
    if isinstance(value, list):
        return [dictsorted(v) for v in value]
    return value


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(message):
        raise ValueError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def make_case(rng, template):
    calls = [{"id": "call_%d" % i, "type": "function",
              "function": {"name": rng.choice(NAMES), "arguments": random_dict(rng, 0)}}
             for i in range(rng.randint(1, 3))]
    message = {"role": "assistant", "tool_calls": calls}
    reasoning = None
    if rng.random() < 0.5:
        reasoning = random_string(rng, TEXT_ATOMS, 20)
        if not reasoning:
            reasoning = None
        else:
            message["reasoning"] = reasoning
    content = ""
    if rng.random() < 0.4:
        content = random_string(rng, TEXT_ATOMS, 15)
    message["content"] = content
    messages = [{"role": "user", "content": "What now?"}, message]
    rendered = template.render(messages=messages, bos_token="<bos>", eos_token="<eos>",
                               add_generation_prompt=False)

    opener = "<|turn>model\n"
    start = rendered.index(opener) + len(opener)
    stop_cue = "<|tool_response>"  # the template's stand-in for the model's stop token
    if not rendered.endswith(stop_cue):
        raise RuntimeError("unexpected render tail: %r" % rendered[-40:])
    text = rendered[start:-len(stop_cue)]

    return {
        "text": text,
        # The template writes '<|channel>thought\n' + reasoning + '\n<channel|>'.
        "reasoning": None if reasoning is None else reasoning + "\n",
        "content": content.strip(),  # strip_thinking(...) | trim; content has no markers
        "calls": [{"name": c["function"]["name"],
                   "arguments": json.dumps(dictsorted(c["function"]["arguments"]),
                                           ensure_ascii=False),
                   "arguments_value": c["function"]["arguments"]} for c in calls],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--template", default=DEFAULT_TEMPLATE)
    args = parser.parse_args()
    with open(args.template, encoding="utf-8") as f:
        template = make_env().from_string(f.read())
    rng = random.Random(args.seed)
    out = sys.stdout.buffer
    for _ in range(args.count):
        case = make_case(rng, template)
        out.write(json.dumps(case, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()


if __name__ == "__main__":
    main()
