//  The answer assembler (common/mesh_completion.c) against the openai SDK's
//  own stream helper: the same chunks, served as SSE to
//  client.chat.completions.stream () by a local server and fed to
//  build/bin/mesh-assemble, must add up to the same chat.completion, but
//  for the differences mesh_completion.h names (reasoning_content pieces
//  are joined, where the SDK keeps the last one; an answer with no text is
//  "" rather than null, and "refusal" is there only when there was one, as
//  in DeepSeek's non-stream answers).  Then the same through the
//  mesh: a non-stream answer the connector assembles from a stream-only
//  upstream equals what the SDK assembles from the stream of that request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';

import { client, user, waitForGateway } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ASSEMBLE = process.env.SEEKMESH_ASSEMBLE
    || path.join(process.env.SEEKMESH_BIN || path.join(HERE, '..', '..', 'build', 'bin'), 'mesh-assemble');

const base = (extra = {}) => ({
    id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1700000000, model: 'deepseek-chat',
    system_fingerprint: 'fp_1', ...extra,
});
const chunk = (delta, extra = {}, choice = {}) => base({
    choices: [{ index: 0, delta, logprobs: null, finish_reason: null, ...choice }], ...extra,
});
const usage = { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13,
                prompt_tokens_details: { cached_tokens: 0 }, prompt_cache_hit_tokens: 0,
                prompt_cache_miss_tokens: 9 };

//  Streams as the upstreams send them
const STREAMS = {
    'deepseek-chat': [
        chunk({ role: 'assistant', content: '' }),
        chunk({ content: 'Hello' }),
        chunk({ content: ', "world" \u00e9\n\u{1F600}' }),
        chunk({ content: '' }, { usage }, { finish_reason: 'stop' }),
    ],
    'deepseek-reasoner': [
        chunk({ role: 'assistant', content: null, reasoning_content: '' }),
        chunk({ content: null, reasoning_content: 'Let me ' }),
        chunk({ content: null, reasoning_content: 'think.' }),
        chunk({ content: 'Four.', reasoning_content: null }),
        chunk({ content: '', reasoning_content: null }, {
            usage: { ...usage, completion_tokens_details: { reasoning_tokens: 3 } },
        }, { finish_reason: 'stop' }),
    ],
    'tool calls split, parallel': [
        chunk({ role: 'assistant', content: '' }),
        chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function',
                               function: { name: 'lookup', arguments: '' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
        chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function',
                               function: { name: 'time', arguments: '{}' } }] }),
        chunk({}, { usage }, { finish_reason: 'tool_calls' }),
    ],
    'content then a tool call': [
        chunk({ role: 'assistant', content: 'Let me check. ' }),
        chunk({ tool_calls: [{ index: 0, id: 'c1', type: 'function',
                               function: { name: 'f', arguments: '{"a":1}' } }] }),
        chunk({}, {}, { finish_reason: 'tool_calls' }),
    ],
    'usage in a final chunk without choices (OpenAI include_usage)': [
        chunk({ role: 'assistant', content: 'Hi' }),
        chunk({}, {}, { finish_reason: 'length' }),
        base({ choices: [], usage }),
    ],
    'unknown members at every level': [
        chunk({ role: 'assistant', content: 'a', custom_delta: 1 }, { x_top: 'one' }, { x_choice: true }),
        chunk({ content: 'b', custom_delta: 2 }, { x_top: 'two' }),
        chunk({}, {}, { finish_reason: 'stop', x_choice: false }),
    ],
    'refusal pieces and a null fingerprint': [
        base({ system_fingerprint: null, choices: [{ index: 0, delta: { role: 'assistant', refusal: 'I ' },
                                                     logprobs: null, finish_reason: null }] }),
        base({ system_fingerprint: null, choices: [{ index: 0, delta: { refusal: 'cannot.' },
                                                     logprobs: null, finish_reason: 'stop' }] }),
    ],
    'two choices (n=2)': [
        base({ choices: [{ index: 0, delta: { role: 'assistant', content: 'A' }, finish_reason: null },
                         { index: 1, delta: { role: 'assistant', content: 'B' }, finish_reason: null }] }),
        base({ choices: [{ index: 1, delta: { content: 'b' }, finish_reason: 'stop' }] }),
        base({ choices: [{ index: 0, delta: { content: 'a' }, finish_reason: 'stop' }] }),
    ],
    'logprobs from the second chunk': [
        chunk({ role: 'assistant', content: '' }),
        chunk({ content: 'x' }, {}, { logprobs: { content: [{ token: 'x', logprob: -0.5, bytes: [120],
                                                            top_logprobs: [] }] } }),
        chunk({ content: 'y' }, {}, { logprobs: { content: [{ token: 'y', logprob: -0.25, bytes: [121],
                                                            top_logprobs: [] }] } }),
        chunk({}, {}, { finish_reason: 'stop' }),
    ],
    'a legacy function call': [
        chunk({ role: 'assistant', content: null, function_call: { name: 'f', arguments: '' } }),
        chunk({ function_call: { arguments: '{"q":' } }),
        chunk({ function_call: { arguments: '2}' } }),
        chunk({}, {}, { finish_reason: 'function_call' }),
    ],
    'cut during reasoning: no text at all': [
        chunk({ role: 'assistant', content: null, reasoning_content: 'Thinking ' }),
        chunk({ content: null, reasoning_content: 'about' }, {}, { finish_reason: 'length' }),
    ],
    'a model and id that change mid-stream': [
        chunk({ role: 'assistant', content: 'one ' }),
        chunk({ content: 'two' }, { id: 'chatcmpl-2', model: 'other' }),
        chunk({}, { created: 1700000001 }, { finish_reason: 'stop' }),
    ],
};

//  A local upstream serving one stream per request path
let server, serverUrl;
function serve (chunks) {
    return chunks.map(c => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
}

before(async () => {
    server = http.createServer((req, res) => {
        const name = decodeURIComponent(req.url.split('/')[1]);
        req.resume();
        req.on('end', () => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.end(serve(STREAMS[name]));
        });
    });
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    serverUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => server?.close());

async function sdkAnswer (name) {
    const sdk = new OpenAI({ baseURL: `${serverUrl}/${encodeURIComponent(name)}`, apiKey: 'x', maxRetries: 0 });
    const stream = sdk.chat.completions.stream({ model: 'deepseek-chat', messages: user('hi') });
    return stream.finalChatCompletion();
}

function ourAnswer (chunks, parsed = false) {
    const input = chunks.map(c => JSON.stringify(c)).join('\n') + '\n';
    const out = execFileSync(ASSEMBLE, parsed ? ['--parsed'] : [], { input, encoding: 'utf8' });
    return JSON.parse(out);
}

//  Where we part from the SDK on purpose: reasoning_content is every
//  string piece joined (present when one was a string); the SDK keeps the
//  last value it saw
function joinedReasoning (chunks, index) {
    const pieces = chunks.flatMap(c => c.choices.filter(ch => ch.index === index))
        .map(ch => ch.delta?.reasoning_content).filter(p => typeof p === 'string');
    return pieces.length ? pieces.join('') : undefined;
}

describe('mesh_completion adds up a stream as the openai SDK does', () => {
    for (const [name, chunks] of Object.entries(STREAMS)) {
        test(name, async () => {
            const theirs = structuredClone(await sdkAnswer(name));
            const ours = ourAnswer(chunks);
            assert.deepEqual(ourAnswer(chunks, true), ours, 'the scanner and jansson agree');
            for (const choice of theirs.choices) {
                delete choice.message.reasoning_content;
                const joined = joinedReasoning(chunks, choice.index);
                if (joined !== undefined)
                    choice.message.reasoning_content = joined;
            }
            //  An answer without text, tool call or refusal: "" like a
            //  non-stream answer (the SDK says null); no refusal member
            //  unless there was one
            for (const { message } of theirs.choices) {
                if (message.content === null && !message.tool_calls && !message.function_call
                    && message.refusal === null)
                    message.content = '';
                if (message.refusal === null)
                    delete message.refusal;
            }
            //  The SDK's parsed helpers (null unless a response_format asks)
            for (const choice of theirs.choices) {
                if (choice.message.parsed === null)
                    delete choice.message.parsed;
                for (const call of choice.message.tool_calls ?? [])
                    delete call.function.parsed_arguments;
            }
            assert.deepEqual(ours, theirs);
        });
    }
});

describe('through the mesh', () => {
    before(() => waitForGateway());

    test('a non-stream answer assembled by the connector equals the SDK\'s from the stream', async () => {
        //  deepseek-chat-ws is stream-only: the connector streams from the
        //  upstream and assembles the non-stream answer itself
        for (const model of ['deepseek-chat-ws']) {
            const body = { model, messages: user('assemble "this" for me \u00e9'),
                           tools: undefined, mock: { tokens: 5 } };
            const whole = await client().chat.completions.create(body);
            const streamed = await client().chat.completions.stream(body).finalChatCompletion();
            for (const answer of [whole, streamed]) {
                delete answer.id;
                delete answer.created;
                delete answer.choices[0].message.parsed;
            }
            //  The SDK's "refusal": null (see mesh_completion.h)
            assert.equal(streamed.choices[0].message.refusal, null);
            delete streamed.choices[0].message.refusal;
            assert.equal(whole.choices[0].message.content, 'Echo: assemble "this" for me \u00e9 t1 t2 t3 t4');
            assert.deepEqual(whole, streamed);
        }
    });
});
