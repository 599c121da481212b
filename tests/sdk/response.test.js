//  withResponse() and asResponse(): the raw HTTP response behind a call.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

//  The model asked for -> the configured model that answered it
const ANSWERED = [
    ['deepseek-chat', 'deepseek-chat'],
    ['deepseek-v4-flash', 'deepseek-chat'],
    ['deepseek-v4-pro', 'deepseek-reasoner'],
    ['deepseek-chat-ws', 'deepseek-chat-ws'],
];

for (const [asked, answered] of ANSWERED) {
    test(`withResponse() on ${asked}: x-request-id, and x-seekmesh-model ${answered}`, async () => {
        const { data, response, request_id } = await client().chat.completions.create({
            model: asked, messages: user('who answers'),
        }).withResponse();
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type'), /^application\/json/);
        const id = response.headers.get('x-request-id');
        assert.ok(id && id.length > 0, 'x-request-id');
        assert.equal(request_id, id);
        assert.equal(response.headers.get('x-seekmesh-model'), answered);
        assert.equal(data.choices[0].message.content, 'Echo: who answers');
    });
}

test('every request gets its own x-request-id', async () => {
    const ids = new Set();
    for (let i = 0; i < 5; i++) {
        const { response } = await client().chat.completions.create({
            model: 'deepseek-chat', messages: user(`n${i}`),
        }).withResponse();
        ids.add(response.headers.get('x-request-id'));
    }
    assert.equal(ids.size, 5);
});

test('asResponse() on a stream: text/event-stream, no-cache, data lines, [DONE]', async () => {
    const response = await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('raw'), stream: true,
    }).asResponse();
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    assert.ok(response.headers.get('x-request-id'));
    assert.equal(response.headers.get('x-seekmesh-model'), 'deepseek-chat');
    const text = await response.text();
    assert.ok(!text.includes('\r'), 'LF only');
    const events = text.split('\n\n');
    assert.equal(events.pop(), '', 'ends with a blank line');
    assert.equal(events.at(-1), 'data: [DONE]');
    for (const event of events) {
        assert.ok(event.startsWith('data: '), `an event of one data line: ${event}`);
        assert.ok(!event.includes('\n'), `one line: ${event}`);
    }
    const chunks = events.slice(0, -1).map(event => JSON.parse(event.slice(6)));
    assert.equal(chunks.map(c => c.choices[0].delta.content ?? '').join(''), 'Echo: raw');
});

test('asResponse() non-stream: the JSON body as the SDK would parse it', async () => {
    const response = await client().chat.completions.create({
        model: 'deepseek-chat', messages: user('raw json'),
    }).asResponse();
    assert.equal(response.status, 200);
    assert.ok(response.headers.get('x-request-id'));
    const body = await response.json();
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.choices[0].message.content, 'Echo: raw json');
});
