//  GET /models through the SDK: the page, and its async iteration.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, waitForGateway } from './helpers.js';

before(() => waitForGateway());

test('models.list(): one page that holds deepseek-chat', async () => {
    const page = await client().models.list();
    const ids = page.data.map(model => model.id);
    assert.ok(ids.includes('deepseek-chat'), `ids: ${ids}`);
    assert.ok(ids.includes('deepseek-reasoner'), `ids: ${ids}`);
    assert.ok(ids.includes('deepseek-chat-ws'), `ids: ${ids}`);
    assert.equal(new Set(ids).size, ids.length, 'no model twice');
    for (const model of page.data) {
        assert.equal(model.object, 'model');
        assert.equal(typeof model.owned_by, 'string');
        assert.equal(typeof model.created, 'number');
    }
    assert.equal(page.hasNextPage(), false);
});

test('models.list(): for await iterates every model across pages', async () => {
    const ids = [];
    for await (const model of client().models.list())
        ids.push(model.id);
    assert.ok(ids.includes('deepseek-chat'));
    const page = await client().models.list();
    assert.deepEqual(ids, page.data.map(model => model.id));
});

test('models.list().withResponse(): 200 with x-request-id', async () => {
    const { data, response } = await client().models.list().withResponse();
    assert.equal(response.status, 200);
    assert.ok(response.headers.get('x-request-id'));
    assert.ok(data.data.some(model => model.id === 'deepseek-chat'));
});
