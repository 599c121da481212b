//  Thinking models: reasoning_content before content, in messages and in
//  stream deltas.  deepseek-v4-pro is an alias of deepseek-reasoner.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, collect, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

const PROMPT = 'why not';
const REASONING = 'Thinking about: why not';
const CONTENT = 'Echo: why not';
const USAGE = {
    prompt_tokens: 2,
    completion_tokens: 7,
    total_tokens: 9,
    prompt_tokens_details: { cached_tokens: 0 },
    prompt_cache_hit_tokens: 0,
    prompt_cache_miss_tokens: 2,
    completion_tokens_details: { reasoning_tokens: 4 },
};

test('deepseek-v4-pro non-stream: message.reasoning_content and content exact', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-v4-pro', messages: user(PROMPT),
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'deepseek-reasoner');
    const { message, finish_reason } = completion.choices[0];
    assert.equal(message.reasoning_content, REASONING);
    assert.equal(message.content, CONTENT);
    assert.equal(finish_reason, 'stop');
    assert.deepEqual(completion.usage, USAGE);
});

test('deepseek-v4-pro stream: reasoning deltas, then content deltas', async () => {
    const chunks = await collect(await client().chat.completions.create({
        model: 'deepseek-v4-pro', messages: user(PROMPT), stream: true,
    }));
    //  The order of the non-empty deltas, as kind:text
    const order = [];
    for (const chunk of chunks) {
        const delta = chunk.choices[0]?.delta ?? {};
        if (delta.reasoning_content)
            order.push(`R:${delta.reasoning_content}`);
        if (delta.content)
            order.push(`C:${delta.content}`);
    }
    assert.deepEqual(order, [
        'R:Thinking ', 'R:about: ', 'R:why ', 'R:not',
        'C:Echo: ', 'C:why ', 'C:not',
    ]);
    const reasoning = chunks.map(c => c.choices[0]?.delta?.reasoning_content ?? '').join('');
    const content = chunks.map(c => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(reasoning, REASONING);
    assert.equal(content, CONTENT);
    const lastReasoning = order.findLastIndex(s => s.startsWith('R:'));
    const firstContent = order.findIndex(s => s.startsWith('C:'));
    assert.ok(lastReasoning < firstContent, 'all reasoning comes before any content');

    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.ok(chunks.every(c => c.id === chunks[0].id));
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, 'stop');
    assert.deepEqual(last.usage, USAGE);
});

test('deepseek-reasoner by its own name answers the same', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-reasoner', messages: user(PROMPT),
    });
    assert.equal(completion.choices[0].message.reasoning_content, REASONING);
    assert.equal(completion.choices[0].message.content, CONTENT);
});

test('reasoning_content on an earlier assistant message passes through', async () => {
    const completion = await client().chat.completions.create({
        model: 'deepseek-v4-pro',
        messages: [
            { role: 'user', content: 'first' },
            { role: 'assistant', content: 'Echo: first', reasoning_content: 'Thinking about: first' },
            { role: 'user', content: PROMPT },
        ],
    });
    assert.equal(completion.choices[0].message.reasoning_content, REASONING);
    assert.equal(completion.choices[0].message.content, CONTENT);
});
