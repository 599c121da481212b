//  The response cache through the openai SDK: a second identical request,
//  stream or not, on an HTTP/SSE upstream (deepseek-chat) and a WebSocket
//  upstream (deepseek-chat-ws), is a hit whose content is the first
//  answer's; the SDK sees an ordinary answer (a stream with the role first,
//  usage with prompt_cache_hit_tokens on the final chunk), and only the
//  x-seekmesh-cache header tells them apart.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { client, collect, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

//  Opts each request in for a minute, whatever the model's own settings
const CACHED = { headers: { 'x-seekmesh-cache': 'ttl=60' } };

function content (chunks) {
    return chunks.map(chunk => chunk.choices[0]?.delta?.content ?? '').join('');
}

for (const name of ['deepseek-chat', 'deepseek-chat-ws']) {
    describe(`cache on ${name}`, () => {
        test('non-stream: the second identical request is a hit with the same answer', async () => {
            const prompt = `cache me ${randomUUID ()}`;
            const body = { model: name, messages: user(prompt) };
            const first = await client().chat.completions.create(body, CACHED).withResponse();
            assert.equal(first.response.headers.get('x-seekmesh-cache'), 'miss');
            const second = await client().chat.completions.create(body, CACHED).withResponse();
            assert.equal(second.response.headers.get('x-seekmesh-cache'), 'hit');
            assert.equal(second.data.object, 'chat.completion');
            assert.equal(second.data.choices[0].message.content, `Echo: ${prompt}`);
            assert.deepEqual(second.data.choices, first.data.choices);
            assert.deepEqual(second.data.usage, first.data.usage);
            assert.notEqual(second.data.id, first.data.id);
            assert.ok(Math.abs(second.data.created - Date.now() / 1000) < 300);
        });

        test('stream: the hit streams like the model, role first, usage last', async () => {
            const prompt = `stream me ${randomUUID ()}`;
            const body = { model: name, messages: user(prompt), stream: true };
            const first = await client().chat.completions.create(body, CACHED).withResponse();
            assert.equal(first.response.headers.get('x-seekmesh-cache'), 'miss');
            const missed = await collect(first.data);
            const second = await client().chat.completions.create(body, CACHED).withResponse();
            assert.equal(second.response.headers.get('x-seekmesh-cache'), 'hit');
            const chunks = await collect(second.data);
            assert.equal(content(chunks), content(missed));
            assert.equal(content(chunks), `Echo: ${prompt}`);
            assert.equal(new Set(chunks.map(chunk => chunk.id)).size, 1);
            assert.equal(chunks[0].object, 'chat.completion.chunk');
            assert.equal(chunks[0].choices[0].delta.role, 'assistant');
            const last = chunks[chunks.length - 1];
            assert.equal(last.choices[0].finish_reason, 'stop');
            assert.equal(typeof last.usage.prompt_cache_hit_tokens, 'number');
            assert.equal(last.usage.completion_tokens, missed[missed.length - 1].usage.completion_tokens);
        });

        test('a stream and a non-stream request share one kept answer', async () => {
            const prompt = `both ways ${randomUUID ()}`;
            await client().chat.completions.create({ model: name, messages: user(prompt) }, CACHED);
            const stream = await client().chat.completions.create(
                { model: name, messages: user(prompt), stream: true }, CACHED).withResponse();
            assert.equal(stream.response.headers.get('x-seekmesh-cache'), 'hit');
            assert.equal(content(await collect(stream.data)), `Echo: ${prompt}`);
        });
    });
}
