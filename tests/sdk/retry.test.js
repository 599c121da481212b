//  x-should-retry on every error the mesh answers, as the openai SDK acts on
//  it: with maxRetries 2, the HTTP requests the SDK makes are 3 where a
//  retry can help (rate limits, overload, upstream failures that may pass)
//  and 1 where it cannot (bad input, keys, budgets, an upstream that does
//  not know the model or refuses our credentials).  Counted with a fetch
//  that counts.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import { client, countingFetch, rejection, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

//  Keys of the test mesh (test_sdk.py) for the refusals that need one
const BUDGET_KEY = process.env.SEEKMESH_BUDGET_KEY;
const NARROW_KEY = process.env.SEEKMESH_NARROW_KEY;

const ask = (extra = {}) => ({ model: 'deepseek-chat', messages: user('x'), ...extra });

//  name, what to send, the status and code expected, whether a retry helps
const CASES = [
    ['400 bad messages', () => ask({ messages: [] }), 400, 'invalid_value', false],
    ['401 unknown key', () => ask(), 401, 'invalid_api_key', false, { apiKey: 'sk-not-a-key-at-all' }],
    ['402 budget spent', () => ask(), 402, 'budget_exhausted', false, { apiKey: BUDGET_KEY }],
    ['402 upstream balance', () => ask({ mock: { status: 402 } }), 402, 'insufficient_balance', false],
    ['403 model not allowed', () => ask(), 403, 'model_not_allowed', false, { apiKey: NARROW_KEY }],
    ['404 unknown model', () => ask({ model: 'no-such-model' }), 404, 'model_not_found', false],
    ['413 body too large', () => ask({ messages: user('x'.repeat(1100 * 1024)) }), 413,
        'request_too_large', false],
    ['422 temperature', () => ask({ temperature: 5 }), 422, 'invalid_value', false],
    ['502 upstream does not know the model', () => ask({ mock: { status: 404 } }), 502,
        'upstream_not_found', false],
    ['502 upstream refuses our key', () => ask({ mock: { status: 401 } }), 502,
        'upstream_auth_failed', false],
    ['429 upstream rate limit', () => ask({ mock: { status: 429, retry_after: 1 } }), 429,
        'rate_limit_exceeded', true],
    ['502 upstream failure', () => ask({ mock: { status: 500 } }), 502, 'upstream_error', true],
    ['503 upstream overloaded', () => ask({ mock: { status: 503, retry_after: 1 } }), 503,
        'upstream_overloaded', true],
];

before(async () => {
    //  The budget key's first request spends its budget (1 token)
    assert.ok(BUDGET_KEY && NARROW_KEY, 'test_sdk.py passes SEEKMESH_BUDGET_KEY and SEEKMESH_NARROW_KEY');
    await client({ apiKey: BUDGET_KEY }).chat.completions.create(ask());
});

for (const [name, body, status, code, retries, options = {}] of CASES) {
    test(`${name}: x-should-retry ${retries}, ${retries ? 3 : 1} request(s) with maxRetries 2`,
         { timeout: 15000 }, async () => {
        const counter = countingFetch();
        const error = await rejection(client({ maxRetries: 2, fetch: counter.fetch, ...options })
            .chat.completions.create(body()));
        assert.equal(error.status, status, `${error}`);
        assert.equal(error.code, code, `${error}`);
        assert.equal(error.headers.get('x-should-retry'), String(retries));
        assert.equal(counter.calls, retries ? 3 : 1, `the SDK made ${counter.calls} requests`);
    });
}
