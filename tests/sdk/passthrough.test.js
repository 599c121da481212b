//  Request fields the gateway does not know are passed on, never refused.
//  Where the mock reacts to a field (thinking, max_completion_tokens,
//  stream_options), the answer shows that it arrived.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, collect, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

test('user, seed, n: 1, parallel_tool_calls, reasoning_effort, user_id are accepted', async () => {
    const { data, response } = await client().chat.completions.create({
        model: 'deepseek-chat',
        messages: user('extra fields'),
        user: 'user-1234',
        user_id: 'u-42',
        seed: 7,
        n: 1,
        parallel_tool_calls: false,
        reasoning_effort: 'low',
        presence_penalty: 0,
        frequency_penalty: 0,
        top_p: 1,
        logprobs: false,
    }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].message.content, 'Echo: extra fields');
});

test('thinking: {type: "enabled"} reaches the upstream (reasoning appears)', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-v4-flash', messages: user('hm'), thinking: { type: 'enabled' },
    });
    assert.equal(completion.choices[0].message.reasoning_content, 'Thinking about: hm');
    assert.equal(completion.choices[0].message.content, 'Echo: hm');
});

test('stream_options: {include_usage: true}: 200 and usage on the final chunk', async () => {
    const chunks = await collect(await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('count me'), stream: true,
        stream_options: { include_usage: true },
    }));
    const content = chunks.map(c => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(content, 'Echo: count me');
    const withUsage = chunks.filter(c => c.usage);
    assert.equal(withUsage.length, 1);
    assert.equal(withUsage[0], chunks.at(-1));
    assert.equal(chunks.at(-1).usage.prompt_tokens, 2);
    assert.equal(chunks.at(-1).usage.completion_tokens, 3);
    assert.equal(chunks.at(-1).usage.total_tokens, 5);
});

test('max_completion_tokens reaches the upstream (finish_reason length)', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('one two three'), max_completion_tokens: 2,
    });
    assert.equal(completion.choices[0].message.content, 'Echo: one ');
    assert.equal(completion.choices[0].finish_reason, 'length');
});

test('response_format json_object and stop (string and list) are accepted', async () => {
    //  JSON mode reaches the upstream: the mock answers a JSON object
    const json = await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('fmt'), response_format: { type: 'json_object' },
    });
    assert.deepEqual(JSON.parse(json.choices[0].message.content), { echo: 'fmt' });
    for (const extra of [
        { response_format: { type: 'text' } },
        { stop: 'never' },
        { stop: ['never', 'ever'] },
    ]) {
        const completion = await client().chat.completions.create({
            model: 'deepseek-chat', messages: user('fmt'), ...extra,
        });
        assert.equal(completion.choices[0].message.content, 'Echo: fmt', JSON.stringify(extra));
    }
});

test("Dify's provider check: max_tokens 5, \"ping\", non-stream", async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-v4-flash', messages: user('ping'), max_tokens: 5,
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices[0].message.content, 'Echo: ping');
});
