//  chat.completions.create, non-stream and stream, on an HTTP/SSE upstream
//  (deepseek-chat) and a WebSocket upstream (deepseek-chat-ws), and an
//  upstream lost mid-stream.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { client, collect, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

const PROMPT = 'hello big world';
//  The mock echoes the last user message, cut after each space; usage
//  counts the words of every message and the content deltas.
const CONTENT = 'Echo: hello big world';
const USAGE = {
    prompt_tokens: 3,
    completion_tokens: 4,
    total_tokens: 7,
    prompt_tokens_details: { cached_tokens: 0 },
    prompt_cache_hit_tokens: 0,
    prompt_cache_miss_tokens: 3,
};

function assertCreated (created) {
    assert.ok(Number.isInteger(created), `created ${created} is an integer`);
    assert.ok(Math.abs(created - Date.now() / 1000) < 300, `created ${created} is about now`);
}

//  name: the model asked for; upstream: what the upstream calls it
const UPSTREAMS = [
    { name: 'deepseek-chat', upstream: 'deepseek-chat', kind: 'HTTP' },
    { name: 'deepseek-chat-ws', upstream: 'deepseek-chat', kind: 'WebSocket' },
];

for (const { name, upstream, kind } of UPSTREAMS) {
    describe(`${name} (${kind} upstream)`, () => {
        test('non-stream: one chat.completion with exact content and usage', async () => {
            const completion = await client().chat.completions.create({
                model: name, messages: user(PROMPT),
            });
            assert.equal(completion.object, 'chat.completion');
            assert.equal(typeof completion.id, 'string');
            assert.ok(completion.id.length > 0);
            assertCreated(completion.created);
            assert.equal(completion.model, upstream);
            assert.equal(completion.choices.length, 1);
            const [choice] = completion.choices;
            assert.equal(choice.index, 0);
            assert.equal(choice.finish_reason, 'stop');
            assert.equal(choice.message.role, 'assistant');
            assert.equal(choice.message.content, CONTENT);
            assert.equal(choice.message.tool_calls, undefined);
            assert.deepEqual(completion.usage, USAGE);
        });

        test('stream: async iterator, one id, role first, usage on the final chunk', async () => {
            const stream = await client().chat.completions.create({
                model: name, messages: user(PROMPT), stream: true,
            });
            const chunks = await collect(stream);
            assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
            const id = chunks[0].id;
            assert.equal(typeof id, 'string');
            assert.ok(id.length > 0);
            for (const chunk of chunks) {
                assert.equal(chunk.object, 'chat.completion.chunk');
                assert.equal(chunk.id, id, 'the same id on every chunk');
                assert.equal(chunk.created, chunks[0].created, 'the same created on every chunk');
                assert.equal(chunk.model, upstream);
            }
            assertCreated(chunks[0].created);
            assert.equal(chunks[0].choices[0].delta.role, 'assistant');

            const content = chunks.map(c => c.choices[0]?.delta?.content ?? '').join('');
            assert.equal(content, CONTENT);
            //  Word by word: "Echo: ", "hello ", "big ", "world"
            const pieces = chunks.map(c => c.choices[0]?.delta?.content).filter(Boolean);
            assert.deepEqual(pieces, ['Echo: ', 'hello ', 'big ', 'world']);

            const finished = chunks.filter(c => c.choices[0]?.finish_reason);
            assert.equal(finished.length, 1, 'one chunk has a finish_reason');
            const last = chunks.at(-1);
            assert.equal(finished[0], last, 'the finish_reason chunk is the last');
            assert.equal(last.choices[0].finish_reason, 'stop');
            assert.deepEqual(last.usage, USAGE);
            for (const chunk of chunks.slice(0, -1))
                assert.ok(chunk.usage == null, 'usage only on the final chunk');
        });

        test('non-stream, cut during reasoning: content is "" and reasoning_content exact', async () => {
            //  "thinking" turns reasoning on at the mock; max_tokens 2 leaves
            //  room for two reasoning deltas and no content
            const completion = await client().chat.completions.create({
                model: name, messages: user('Paris'), max_tokens: 2,
                thinking: { type: 'enabled' },
            });
            const { message, finish_reason } = completion.choices[0];
            assert.equal(finish_reason, 'length');
            assert.equal(message.reasoning_content, 'Thinking about: ');
            assert.equal(completion.usage.completion_tokens_details?.reasoning_tokens, 2);
            assert.ok('content' in message, 'the message has a content member');
            assert.equal(message.content, '');
        });

        test('stream: the SDK helper assembles the same completion', async () => {
            const runner = client().chat.completions.stream({
                model: name, messages: user(PROMPT),
            });
            const completion = await runner.finalChatCompletion();
            assert.equal(completion.choices[0].message.content, CONTENT);
            assert.equal(completion.choices[0].finish_reason, 'stop');
            assert.equal(await runner.finalContent(), CONTENT);
        });
    });
}

describe('an upstream lost mid-stream', () => {
    test('the error event after the 200 surfaces as an APIError from the iterator', { timeout: 5000 }, async () => {
        const stream = await client().chat.completions.create({
            model: 'deepseek-chat', messages: user('one two three four'), stream: true,
            mock: { reset_after: 2 },
        });
        let content = '';
        const error = await (async () => {
            try {
                for await (const chunk of stream)
                    content += chunk.choices[0]?.delta?.content ?? '';
            }
            catch (e) {
                return e;
            }
            return null;
        })();
        assert.ok(error instanceof OpenAI.APIError, `got ${error}`);
        assert.equal(error.error?.code, 'upstream_disconnected');
        assert.match(error.message, /upstream connection was lost/);
        assert.equal(content, 'Echo: one ');
    });
});
