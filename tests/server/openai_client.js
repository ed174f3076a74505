// Drives a running gemmaserve with the official `openai` npm client (the oracle for wire format:
// if the SDK parses our responses and streams into the documented shapes, real clients will).
// Usage: node tests/server/openai_client.js <port>. Prints one line per check; exits 1 on the
// first failure. Requests whose prompt carries a "#..." trigger are answered by the test's
// scripted runner (see scripted_runner.h); everything else is the random demo model.
'use strict';
const assert = require('assert');
const path = require('path');
const OpenAI = require(path.join(__dirname, '..', 'oracle', 'node_modules', 'openai')).default;

const port = process.argv[2];
const base = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });

const TOOLS = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } },
                  required: ['city'] },
  },
}];

function user(text) { return [{ role: 'user', content: text }]; }

async function collect(stream) {
  const out = { chunks: [], content: '', reasoning: '', reasoning_content: '', tools: {},
                finish: null, usage: null, roles: [] };
  for await (const chunk of stream) {
    out.chunks.push(chunk);
    if (chunk.usage && chunk.choices.length === 0) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      const d = c.delta || {};
      if (d.role) out.roles.push(d.role);
      if (d.content) out.content += d.content;
      if (d.reasoning) out.reasoning += d.reasoning;
      if (d.reasoning_content) out.reasoning_content += d.reasoning_content;
      for (const t of d.tool_calls || []) {
        const slot = out.tools[t.index] || (out.tools[t.index] = { id: '', name: '', arguments: '' });
        if (t.id) slot.id = t.id;
        if (t.function && t.function.name) slot.name += t.function.name;
        if (t.function && t.function.arguments) slot.arguments += t.function.arguments;
      }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

const checks = [];
function check(name, fn) { checks.push([name, fn]); }

check('models.list', async () => {
  const models = await client.models.list();
  assert.strictEqual(models.data[0].id, 'demo');
  assert.strictEqual(models.data[0].object, 'model');
});

check('chat non-streaming and streaming agree, usage', async () => {
  const req = { model: 'demo', messages: user('Hello there'), max_tokens: 8, temperature: 0 };
  const r = await client.chat.completions.create(req);
  const m = r.choices[0].message;
  assert.strictEqual(r.object, 'chat.completion');
  assert.strictEqual(m.role, 'assistant');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  assert.strictEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  const s = await collect(await client.chat.completions.create(
      { ...req, stream: true, stream_options: { include_usage: true } }));
  assert.strictEqual(s.chunks[0].choices[0].delta.role, 'assistant', 'role delta first');
  assert.strictEqual(s.chunks[0].object, 'chat.completion.chunk');
  assert.strictEqual(s.content, m.content || '');
  assert.strictEqual(s.finish, r.choices[0].finish_reason);
  assert.deepStrictEqual(
      [s.usage.prompt_tokens, s.usage.completion_tokens, s.usage.total_tokens],
      [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens]);
  const ids = new Set(s.chunks.map((c) => c.id));
  assert.strictEqual(ids.size, 1, 'one id per stream');
});

check('completions: text prompt, stream, logprobs, echo', async () => {
  const req = { model: 'demo', prompt: 'The sky is', max_tokens: 6, temperature: 0, logprobs: 2 };
  const r = await client.completions.create(req);
  const c = r.choices[0];
  assert.strictEqual(r.object, 'text_completion');
  assert.strictEqual(c.logprobs.tokens.length, r.usage.completion_tokens);
  assert.strictEqual(c.logprobs.token_logprobs.length, r.usage.completion_tokens);
  for (const top of c.logprobs.top_logprobs) assert.strictEqual(Object.keys(top).length <= 2, true);
  // Text prompts get <bos> from the tokenizer's post-processor: the count /tokenize reports,
  // which starts with <bos> (id 2).
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'demo', prompt: req.prompt }) })).json();
  assert.strictEqual(tok.tokens[0], 2, '<bos> first');
  assert.strictEqual(r.usage.prompt_tokens, tok.count);
  const s = await client.completions.create({ ...req, stream: true,
                                              stream_options: { include_usage: true } });
  let text = ''; let usage = null; let finish = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  assert.strictEqual(text, c.text);
  assert.strictEqual(finish, c.finish_reason);
  assert.strictEqual(usage.completion_tokens, r.usage.completion_tokens);
  const e = await client.completions.create({ ...req, echo: true, logprobs: null });
  assert.ok(e.choices[0].text.startsWith('The sky is'));
  const ids = await client.completions.create({ model: 'demo', prompt: [2, 400, 401], max_tokens: 2 });
  assert.strictEqual(ids.usage.prompt_tokens, 3, 'token-id prompts are used as given');
});

check('logit_bias forces a token', async () => {
  const tok = await (await fetch(`${base}/tokenize`, { method: 'POST',
    body: JSON.stringify({ prompt: 'x', add_special_tokens: false }) })).json();
  assert.strictEqual(tok.tokens.length, 1);
  const r = await client.chat.completions.create({ model: 'demo', messages: user('say x'), max_tokens: 5,
    temperature: 0, logit_bias: { [tok.tokens[0]]: 100 } });
  assert.strictEqual(r.choices[0].message.content, 'xxxxx');
  assert.strictEqual(r.choices[0].finish_reason, 'length');
});

check('tool call, non-streaming', async () => {
  const r = await client.chat.completions.create({ model: 'demo', messages: user('#tool1 weather?'),
    tools: TOOLS, temperature: 0, max_tokens: 100 });
  const m = r.choices[0].message;
  assert.strictEqual(r.choices[0].finish_reason, 'tool_calls');
  assert.strictEqual(m.content, null);
  assert.strictEqual(m.tool_calls.length, 1);
  const call = m.tool_calls[0];
  assert.strictEqual(call.type, 'function');
  assert.ok(call.id.startsWith('call_'));
  assert.strictEqual(call.function.name, 'get_weather');
  assert.deepStrictEqual(JSON.parse(call.function.arguments), { city: 'Paris', days: 3 });
});

check('tool call, streaming deltas', async () => {
  const s = await collect(await client.chat.completions.create({ model: 'demo',
    messages: user('#tool1 weather?'), tools: TOOLS, tool_choice: 'auto', temperature: 0,
    max_tokens: 100, stream: true }));
  assert.strictEqual(s.finish, 'tool_calls');
  assert.strictEqual(Object.keys(s.tools).length, 1);
  assert.strictEqual(s.tools[0].name, 'get_weather');
  assert.ok(s.tools[0].id.startsWith('call_'));
  assert.deepStrictEqual(JSON.parse(s.tools[0].arguments), { city: 'Paris', days: 3 });
  assert.strictEqual(s.content.trim(), '');
});

check('tool_choice none leaves the call text as content; named still parses', async () => {
  const r = await client.chat.completions.create({ model: 'demo', messages: user('#tool1 weather?'),
    tools: TOOLS, tool_choice: 'none', temperature: 0, max_tokens: 100 });
  assert.strictEqual(r.choices[0].message.tool_calls, undefined);
  assert.ok(r.choices[0].message.content.includes('call:get_weather'));
  assert.strictEqual(r.choices[0].finish_reason, 'stop');
  const n = await client.chat.completions.create({ model: 'demo', messages: user('#tool1 weather?'),
    tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    temperature: 0, max_tokens: 100 });
  assert.strictEqual(n.choices[0].message.tool_calls[0].function.name, 'get_weather');
});

check('tool_choice required forces a call where the model answers in text', async () => {
  const req = { model: 'demo', messages: user('#stop weather?'), tools: TOOLS, temperature: 0,
                max_tokens: 200 };
  const plain = await client.chat.completions.create({ ...req, tool_choice: 'auto' });
  assert.strictEqual(plain.choices[0].message.tool_calls, undefined);
  const r = await client.chat.completions.create({ ...req, tool_choice: 'required' });
  assert.strictEqual(r.choices[0].finish_reason, 'tool_calls');
  const call = r.choices[0].message.tool_calls[0];
  assert.strictEqual(call.function.name, 'get_weather');
  assert.strictEqual(typeof JSON.parse(call.function.arguments), 'object');
});

check('reasoning, non-streaming and streaming', async () => {
  const req = { model: 'demo', messages: user('#think1 what is 2+2'), temperature: 0, max_tokens: 100,
                chat_template_kwargs: { enable_thinking: true } };
  const r = await client.chat.completions.create(req);
  const m = r.choices[0].message;
  assert.strictEqual(m.reasoning, 'Sum 2 and 2.');
  assert.strictEqual(m.reasoning_content, 'Sum 2 and 2.');
  assert.strictEqual(m.content, 'The answer is 4.');
  assert.strictEqual(r.choices[0].finish_reason, 'stop');
  const s = await collect(await client.chat.completions.create({ ...req, stream: true }));
  assert.strictEqual(s.reasoning, 'Sum 2 and 2.');
  assert.strictEqual(s.reasoning_content, 'Sum 2 and 2.');
  assert.strictEqual(s.content, 'The answer is 4.');
  const off = await client.chat.completions.create({ ...req, include_reasoning: false });
  assert.strictEqual(off.choices[0].message.reasoning, null);
  assert.strictEqual(off.choices[0].message.content, 'The answer is 4.');
});

check('reasoning then a tool call', async () => {
  const r = await client.chat.completions.create({ model: 'demo', messages: user('#both go'),
    tools: TOOLS, temperature: 0, max_tokens: 100, chat_template_kwargs: { enable_thinking: true } });
  const m = r.choices[0].message;
  assert.strictEqual(m.reasoning, 'Need weather.');
  assert.strictEqual(m.content, null);
  assert.deepStrictEqual(JSON.parse(m.tool_calls[0].function.arguments), { city: 'Oslo' });
  assert.strictEqual(r.choices[0].finish_reason, 'tool_calls');
});

check('stop strings cut the output, streaming and not', async () => {
  const req = { model: 'demo', messages: user('#stop now'), temperature: 0, max_tokens: 100,
                stop: ['beta'] };
  const r = await client.chat.completions.create(req);
  assert.strictEqual(r.choices[0].message.content, 'alpha ');
  assert.strictEqual(r.choices[0].finish_reason, 'stop');
  assert.strictEqual(r.choices[0].stop_reason, 'beta');
  const s = await collect(await client.chat.completions.create({ ...req, stream: true }));
  assert.strictEqual(s.content, 'alpha ');
  const inc = await client.chat.completions.create({ ...req, include_stop_str_in_output: true });
  assert.strictEqual(inc.choices[0].message.content, 'alpha beta');
});

check('n choices and chat logprobs', async () => {
  const r = await client.chat.completions.create({ model: 'demo', messages: user('hi'), n: 3,
    temperature: 1.0, seed: 42, max_tokens: 4, logprobs: true, top_logprobs: 3 });
  assert.deepStrictEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of r.choices) {
    assert.ok(c.logprobs.content.length >= 1);
    for (const e of c.logprobs.content) {
      assert.ok(e.logprob <= 0);
      assert.strictEqual(e.top_logprobs.length, 3);
      assert.ok(Array.isArray(e.bytes));
    }
  }
  const again = await client.chat.completions.create({ model: 'demo', messages: user('hi'), n: 3,
    temperature: 1.0, seed: 42, max_tokens: 4 });
  assert.deepStrictEqual(again.choices.map((c) => c.message.content),
                         r.choices.map((c) => c.message.content), 'same seed, same samples');
});

check('errors surface as the SDK error classes', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: user('hi') }),
                       (e) => e instanceof OpenAI.NotFoundError && e.status === 404 &&
                              /does not exist/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'demo', messages: user('hi'),
                                                        temperature: -1 }),
                       (e) => e instanceof OpenAI.BadRequestError && e.status === 400 &&
                              e.param === 'temperature');
});

(async () => {
  for (const [name, fn] of checks) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
      process.exit(1);
    }
  }
  console.log(`all ${checks.length} checks passed`);
})();
