//  Tool calls: one call to the first tool, its arguments {"echo": <prompt>},
//  non-stream and streamed; an assistant tool call followed by the tool's
//  answer passes through.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, collect, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

const TOOLS = [{
    type: 'function',
    function: {
        name: 'lookup',
        parameters: { type: 'object', properties: { echo: { type: 'string' } } },
    },
}];
//  Quotes, a backslash, a newline and non-ASCII must survive the JSON in
//  the arguments string
const PROMPT = 'weather in "Paris" \\ today\nà 20 €';

for (const model of ['deepseek-chat', 'deepseek-chat-ws']) {
    describe(`tool calls on ${model}`, () => {
        test('non-stream: message.tool_calls[0] is lookup({echo: prompt})', async () => {
            const completion = await client().chat.completions.create({
                model, messages: user(PROMPT), tools: TOOLS,
            });
            const { message, finish_reason } = completion.choices[0];
            assert.equal(finish_reason, 'tool_calls');
            assert.equal(message.role, 'assistant');
            assert.equal(message.tool_calls.length, 1);
            const [call] = message.tool_calls;
            assert.equal(call.type, 'function');
            assert.equal(typeof call.id, 'string');
            assert.ok(call.id.length > 0);
            assert.equal(call.function.name, 'lookup');
            assert.deepEqual(JSON.parse(call.function.arguments), { echo: PROMPT });
            assert.equal(completion.usage.completion_tokens, 1);
            //  A tool call message has "content": null, as DeepSeek and
            //  OpenAI send it (last: checked after everything else)
            assert.ok('content' in message, 'the message has a content member');
            assert.equal(message.content, null);
        });

        test('stream: the argument deltas concatenate to the same JSON', async () => {
            const chunks = await collect(await client().chat.completions.create({
                model, messages: user(PROMPT), tools: TOOLS, stream: true,
            }));
            const calls = chunks.flatMap(c => c.choices[0]?.delta?.tool_calls ?? []);
            assert.ok(calls.length >= 2, `${calls.length} tool call deltas`);
            assert.ok(calls.every(call => call.index === 0));
            assert.equal(calls[0].function.name, 'lookup');
            assert.equal(calls[0].type, 'function');
            assert.ok(calls[0].id);
            const args = calls.map(call => call.function?.arguments ?? '').join('');
            assert.deepEqual(JSON.parse(args), { echo: PROMPT });
            const last = chunks.at(-1);
            assert.equal(last.choices[0].finish_reason, 'tool_calls');
            assert.ok(last.usage);
        });

        test('stream: the SDK helper assembles the tool call', async () => {
            const runner = client().chat.completions.stream({
                model, messages: user(PROMPT), tools: TOOLS,
            });
            const completion = await runner.finalChatCompletion();
            const { message, finish_reason } = completion.choices[0];
            assert.equal(finish_reason, 'tool_calls');
            assert.equal(message.tool_calls[0].function.name, 'lookup');
            assert.deepEqual(JSON.parse(message.tool_calls[0].function.arguments), { echo: PROMPT });
        });
    });
}

test('tool_choice "none" answers with content', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('no tools'), tools: TOOLS, tool_choice: 'none',
    });
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.equal(completion.choices[0].message.content, 'Echo: no tools');
});

test('assistant content:null + tool_calls, then a tool message, passes through', async () => {
    const messages = [
        { role: 'user', content: 'look it up' },
        {
            role: 'assistant',
            content: null,
            tool_calls: [{
                id: 'call_1', type: 'function',
                function: { name: 'lookup', arguments: '{"echo":"look it up"}' },
            }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'found it' },
    ];
    const { data, response } = await client().chat.completions.create({
        model: 'deepseek-chat', messages,
    }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices[0].finish_reason, 'stop');
    //  The mock echoes the last user message
    assert.equal(data.choices[0].message.content, 'Echo: look it up');
    //  Words of every message with text content: 3 + 2
    assert.equal(data.usage.prompt_tokens, 5);
});
